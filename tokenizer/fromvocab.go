package tokenizer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Vocab is a SentencePiece BPE vocabulary in the flat form other formats
// carry it in: GGUF's tokenizer.ggml.tokens / scores / token_type arrays
// (whose token types are SentencePiece's piece types, 1 = normal …
// 6 = byte), plus the special ids and the two normalizer switches that
// change tokenization (GGUF: tokenizer.ggml.add_space_prefix and
// tokenizer.ggml.remove_extra_whitespaces).
type Vocab struct {
	Pieces []string
	Scores []float32
	Types  []PieceType
	// BOS and EOS are ids of control pieces, or -1.
	BOS, EOS int
	// AddDummyPrefix prepends "▁" to the input (SentencePiece's
	// add_dummy_prefix; llama.cpp's add_space_prefix, default true).
	AddDummyPrefix bool
	// RemoveExtraWhitespaces collapses runs of spaces (SentencePiece's
	// remove_extra_whitespaces; Llama-2 turns it off).
	RemoveExtraWhitespaces bool
}

// FromVocab builds the SentencePiece BPE tokenizer a flat vocabulary
// describes. Byte fallback is on when all 256 "<0xNN>" byte pieces exist, as
// llama.cpp's SentencePiece tokenizer does; whitespace is escaped as "▁"
// (the only mode llama.cpp implements).
func FromVocab(v Vocab) (*SentencePiece, error) {
	n := len(v.Pieces)
	if n == 0 {
		return nil, errors.New("vocabulary is empty")
	}
	if len(v.Scores) != n || len(v.Types) != n {
		return nil, fmt.Errorf("vocabulary has %d pieces but %d scores and %d types", n, len(v.Scores), len(v.Types))
	}
	m := &modelProto{
		pieces:                 append([]string(nil), v.Pieces...),
		scores:                 append([]float32(nil), v.Scores...),
		types:                  append([]PieceType(nil), v.Types...),
		modelType:              modelBPE,
		unkSurface:             " \u2047 ",
		addDummyPrefix:         v.AddDummyPrefix,
		removeExtraWhitespaces: v.RemoveExtraWhitespaces,
		escapeWhitespaces:      true,
	}
	bytePieces := 0
	for i, t := range m.types {
		if t < PieceNormal || t > PieceByte {
			return nil, fmt.Errorf("piece %d %q has unknown type %d", i, m.pieces[i], t)
		}
		if t == PieceByte {
			bytePieces++
		}
	}
	m.byteFallback = bytePieces == 256
	for _, s := range []struct {
		name string
		id   int
		dst  *string
	}{{"BOS", v.BOS, &m.bosPiece}, {"EOS", v.EOS, &m.eosPiece}} {
		if s.id < 0 {
			continue
		}
		if s.id >= n {
			return nil, fmt.Errorf("%s id %d is outside the vocabulary of %d pieces", s.name, s.id, n)
		}
		if m.types[s.id] != PieceControl {
			return nil, fmt.Errorf("%s id %d (%q) is not a control piece", s.name, s.id, m.pieces[s.id])
		}
		*s.dst = m.pieces[s.id]
	}
	return newSentencePiece(m)
}

// Vocab returns the tokenizer's vocabulary in flat form (copies), the
// inverse of FromVocab.
func (t *SentencePiece) Vocab() Vocab {
	return Vocab{
		Pieces:                 append([]string(nil), t.pieces...),
		Scores:                 append([]float32(nil), t.scores...),
		Types:                  append([]PieceType(nil), t.types...),
		BOS:                    t.bosID,
		EOS:                    t.eosID,
		AddDummyPrefix:         t.addDummyPrefix,
		RemoveExtraWhitespaces: t.removeExtraWhitespaces,
	}
}

// MarshalModel serializes the tokenizer as a SentencePiece ModelProto (a
// tokenizer.model file): the pieces with their scores and types, a BPE
// trainer_spec naming the special pieces and the byte-fallback switch, and
// an identity normalizer_spec with the whitespace switches — the fields
// LoadSentencePiece and the reference library read (field numbers from
// sentencepiece_model.proto).
func (t *SentencePiece) MarshalModel() []byte {
	var out []byte
	for i, p := range t.pieces {
		var sp []byte
		sp = protoBytes(sp, 1, []byte(p))
		sp = protoFixed32(sp, 2, math.Float32bits(t.scores[i]))
		sp = protoVarint(sp, 3, uint64(t.types[i]))
		out = protoBytes(out, 1, sp)
	}
	var ts []byte
	ts = protoVarint(ts, 3, modelBPE)
	ts = protoVarint(ts, 35, boolBit(t.byteFallback))
	ts = protoBytes(ts, 44, []byte(t.unkSurface))
	for _, s := range []struct {
		field, id int
	}{{45, t.unkID}, {46, t.bosID}, {47, t.eosID}} {
		if s.id >= 0 {
			ts = protoBytes(ts, s.field, []byte(t.pieces[s.id]))
		} else {
			// An absent field would mean the proto default ("<s>", …);
			// the empty name, which no piece has, keeps the id at -1.
			ts = protoBytes(ts, s.field, nil)
		}
	}
	out = protoBytes(out, 2, ts)
	var ns []byte
	ns = protoBytes(ns, 1, []byte("identity"))
	ns = protoVarint(ns, 3, boolBit(t.addDummyPrefix))
	ns = protoVarint(ns, 4, boolBit(t.removeExtraWhitespaces))
	ns = protoVarint(ns, 5, boolBit(t.escapeWhitespaces))
	return protoBytes(out, 3, ns)
}

func boolBit(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

func protoKey(b []byte, field, wire int) []byte {
	return binary.AppendUvarint(b, uint64(field<<3|wire))
}

func protoVarint(b []byte, field int, v uint64) []byte {
	return binary.AppendUvarint(protoKey(b, field, wireVarint), v)
}

func protoFixed32(b []byte, field int, v uint32) []byte {
	return binary.LittleEndian.AppendUint32(protoKey(b, field, wireFixed32), v)
}

func protoBytes(b []byte, field int, v []byte) []byte {
	b = binary.AppendUvarint(protoKey(b, field, wireBytes), uint64(len(v)))
	return append(b, v...)
}
