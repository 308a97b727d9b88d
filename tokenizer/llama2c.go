package tokenizer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
)

// LoadLlama2C reads the flat tokenizer.bin written by llama2.c's
// tokenizer.py export:
//
//	int32 max_token_length
//	repeated until EOF: float32 score, int32 len, len bytes of piece
//
// (all little-endian). The export lost the piece types and rewrote pieces,
// so they are reconstructed here: "▁" was replaced by a space (we put it
// back), BOS/EOS were written as "\n<s>\n" and "\n</s>\n" (control pieces),
// "<unk>" is the unknown piece and "<0xNN>" are byte pieces. The result is
// the same SentencePiece BPE tokenizer as the tokenizer.model it came from,
// with Llama-2's settings: byte fallback (when all 256 byte pieces exist),
// a dummy prefix and no extra-whitespace removal.
func LoadLlama2C(path string) (*SentencePiece, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	t, err := parseLlama2C(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

func parseLlama2C(data []byte) (*SentencePiece, error) {
	if len(data) < 4 {
		return nil, errors.New("llama2.c tokenizer: file too short for the max_token_length header")
	}
	maxLen := int32(binary.LittleEndian.Uint32(data))
	if maxLen <= 0 {
		return nil, fmt.Errorf("llama2.c tokenizer: invalid max_token_length %d", maxLen)
	}
	m := &modelProto{
		modelType:      modelBPE,
		unkSurface:     " \u2047 ",
		unkPiece:       "<unk>",
		bosPiece:       "<s>",
		eosPiece:       "</s>",
		addDummyPrefix: true,
		// Llama-2 keeps whitespace verbatim; the proto default (true) would
		// not match the model this file was exported from.
		removeExtraWhitespaces: false,
		escapeWhitespaces:      true,
	}
	nBytePieces := 0
	for pos := 4; pos < len(data); {
		id := len(m.pieces)
		if len(data)-pos < 8 {
			return nil, fmt.Errorf("llama2.c tokenizer: truncated entry for token %d at byte %d", id, pos)
		}
		score := math.Float32frombits(binary.LittleEndian.Uint32(data[pos:]))
		n := int32(binary.LittleEndian.Uint32(data[pos+4:]))
		pos += 8
		if n <= 0 || n > maxLen {
			return nil, fmt.Errorf("llama2.c tokenizer: token %d has length %d (max_token_length %d)", id, n, maxLen)
		}
		if int(n) > len(data)-pos {
			return nil, fmt.Errorf("llama2.c tokenizer: token %d (%d bytes) runs past the end of the file", id, n)
		}
		raw := string(data[pos : pos+int(n)])
		pos += int(n)

		piece, typ := raw, PieceNormal
		switch {
		case raw == "<unk>":
			typ = PieceUnknown
		case raw == "\n<s>\n" || raw == "<s>":
			piece, typ = "<s>", PieceControl
		case raw == "\n</s>\n" || raw == "</s>":
			piece, typ = "</s>", PieceControl
		default:
			if _, ok := parseBytePiece(raw); ok {
				typ = PieceByte
				nBytePieces++
			} else {
				piece = strings.ReplaceAll(raw, " ", spaceSymbol)
			}
		}
		m.pieces = append(m.pieces, piece)
		m.scores = append(m.scores, score)
		m.types = append(m.types, typ)
	}
	if len(m.pieces) == 0 {
		return nil, errors.New("llama2.c tokenizer: no tokens")
	}
	// A Llama-family vocabulary has all 256 byte pieces (byte fallback) or
	// none; a partial set means the file was cut short.
	if nBytePieces != 0 && nBytePieces != 256 {
		return nil, fmt.Errorf("llama2.c tokenizer: only %d of the 256 byte pieces <0x00>..<0xFF> (truncated file?)", nBytePieces)
	}
	m.byteFallback = nBytePieces == 256
	t, err := newSentencePiece(m)
	if err != nil {
		return nil, fmt.Errorf("llama2.c tokenizer: %w", err)
	}
	return t, nil
}
