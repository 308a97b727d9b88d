package tokenizer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// This file is a hand-written decoder for the subset of the protobuf wire
// format that a SentencePiece ModelProto uses. We avoid a protobuf dependency
// on purpose: the message is tiny (three nested messages, a handful of scalar
// fields) and decoding it by hand lets every read be bounds-checked, so a
// corrupt or truncated file yields an error instead of a panic.
//
// Field numbers come from sentencepiece_model.proto:
//
//	ModelProto     { repeated SentencePiece pieces = 1; TrainerSpec trainer_spec = 2;
//	                 NormalizerSpec normalizer_spec = 3; }
//	SentencePiece  { string piece = 1; float score = 2; Type type = 3; }
//	TrainerSpec    { ModelType model_type = 3; bool treat_whitespace_as_suffix = 24;
//	                 bool byte_fallback = 35; string unk_surface = 44;
//	                 string unk_piece = 45, bos_piece = 46, eos_piece = 47; }
//	NormalizerSpec { string name = 1; bytes precompiled_charsmap = 2;
//	                 bool add_dummy_prefix = 3; bool remove_extra_whitespaces = 4;
//	                 bool escape_whitespaces = 5; }

// Protobuf wire types.
const (
	wireVarint  = 0
	wireFixed64 = 1
	wireBytes   = 2
	wireFixed32 = 5
)

// protoReader walks one serialized message. Every method checks bounds and
// reports truncation as an error; none of them can panic on any input.
type protoReader struct {
	buf []byte
	pos int
}

func (r *protoReader) done() bool { return r.pos >= len(r.buf) }

func (r *protoReader) varint() (uint64, error) {
	var v uint64
	for shift := uint(0); shift < 64; shift += 7 {
		if r.pos >= len(r.buf) {
			return 0, errors.New("truncated varint")
		}
		b := r.buf[r.pos]
		r.pos++
		v |= uint64(b&0x7f) << shift
		if b < 0x80 {
			return v, nil
		}
	}
	return 0, errors.New("varint longer than 10 bytes")
}

// key reads a field tag and splits it into field number and wire type.
func (r *protoReader) key() (field int, wire int, err error) {
	v, err := r.varint()
	if err != nil {
		return 0, 0, err
	}
	field64 := v >> 3
	if field64 == 0 || field64 > math.MaxInt32 {
		return 0, 0, fmt.Errorf("invalid field number %d", field64)
	}
	return int(field64), int(v & 7), nil
}

func (r *protoReader) bytes() ([]byte, error) {
	n, err := r.varint()
	if err != nil {
		return nil, err
	}
	if n > uint64(len(r.buf)-r.pos) {
		return nil, fmt.Errorf("length-delimited field of %d bytes runs past the end of its message (%d bytes left)", n, len(r.buf)-r.pos)
	}
	b := r.buf[r.pos : r.pos+int(n)]
	r.pos += int(n)
	return b, nil
}

func (r *protoReader) fixed32() (uint32, error) {
	if len(r.buf)-r.pos < 4 {
		return 0, errors.New("truncated fixed32")
	}
	v := binary.LittleEndian.Uint32(r.buf[r.pos:])
	r.pos += 4
	return v, nil
}

// skip discards a field of the given wire type, so unknown fields (the
// trainer spec has dozens we do not need) are tolerated as protobuf demands.
func (r *protoReader) skip(wire int) error {
	switch wire {
	case wireVarint:
		_, err := r.varint()
		return err
	case wireFixed64:
		if len(r.buf)-r.pos < 8 {
			return errors.New("truncated fixed64")
		}
		r.pos += 8
		return nil
	case wireBytes:
		_, err := r.bytes()
		return err
	case wireFixed32:
		_, err := r.fixed32()
		return err
	default:
		// Groups (3, 4) are deprecated and never appear in SentencePiece
		// models; 6 and 7 are not valid wire types at all.
		return fmt.Errorf("unsupported wire type %d", wire)
	}
}

// expect checks that a known field arrived with the wire type its
// declaration implies; a mismatch means the bytes are not a ModelProto.
func expect(field, got, want int) error {
	if got != want {
		return fmt.Errorf("field %d has wire type %d, want %d", field, got, want)
	}
	return nil
}

// PieceType is the SentencePiece.Type enum of sentencepiece_model.proto.
type PieceType uint8

// Piece types. Only Normal, UserDefined and Unused pieces take part in BPE
// merges; Unknown, Control and Byte pieces are "reserved" and can only be
// produced by the special paths (unknown characters, byte fallback, or the
// caller adding BOS/EOS).
const (
	PieceNormal      PieceType = 1
	PieceUnknown     PieceType = 2
	PieceControl     PieceType = 3
	PieceUserDefined PieceType = 4
	PieceUnused      PieceType = 5
	PieceByte        PieceType = 6
)

// Model types of TrainerSpec.model_type.
const (
	modelUnigram = 1
	modelBPE     = 2
	modelWord    = 3
	modelChar    = 4
)

// modelProto holds the fields of a ModelProto that the encoder needs, with
// the proto2 defaults already applied.
type modelProto struct {
	pieces []string
	scores []float32
	types  []PieceType

	modelType               int
	byteFallback            bool
	treatWhitespaceAsSuffix bool
	unkSurface              string
	unkPiece                string
	bosPiece                string
	eosPiece                string

	normalizerName         string
	precompiledCharsmap    []byte
	addDummyPrefix         bool
	removeExtraWhitespaces bool
	escapeWhitespaces      bool
}

// parseModelProto decodes a serialized ModelProto.
func parseModelProto(data []byte) (*modelProto, error) {
	m := &modelProto{
		// proto2 defaults from sentencepiece_model.proto.
		modelType:              modelUnigram,
		unkSurface:             " \u2047 ",
		unkPiece:               "<unk>",
		bosPiece:               "<s>",
		eosPiece:               "</s>",
		addDummyPrefix:         true,
		removeExtraWhitespaces: true,
		escapeWhitespaces:      true,
	}
	r := &protoReader{buf: data}
	for !r.done() {
		field, wire, err := r.key()
		if err != nil {
			return nil, fmt.Errorf("ModelProto at byte %d: %w", r.pos, err)
		}
		switch field {
		case 1, 2, 3:
			if err := expect(field, wire, wireBytes); err != nil {
				return nil, fmt.Errorf("ModelProto: %w", err)
			}
			start := r.pos
			b, err := r.bytes()
			if err != nil {
				return nil, fmt.Errorf("ModelProto field %d at byte %d: %w", field, start, err)
			}
			switch field {
			case 1:
				err = m.parsePiece(b)
				if err != nil {
					err = fmt.Errorf("piece %d: %w", len(m.pieces), err)
				}
			case 2:
				err = m.parseTrainerSpec(b)
			case 3:
				err = m.parseNormalizerSpec(b)
			}
			if err != nil {
				return nil, err
			}
		default:
			if err := r.skip(wire); err != nil {
				return nil, fmt.Errorf("ModelProto field %d: %w", field, err)
			}
		}
	}
	return m, nil
}

func (m *modelProto) parsePiece(b []byte) error {
	r := &protoReader{buf: b}
	var (
		piece    string
		hasPiece bool
		score    float32
		typ      = PieceNormal
	)
	for !r.done() {
		field, wire, err := r.key()
		if err != nil {
			return err
		}
		switch field {
		case 1:
			if err := expect(field, wire, wireBytes); err != nil {
				return err
			}
			s, err := r.bytes()
			if err != nil {
				return err
			}
			piece, hasPiece = string(s), true
		case 2:
			if err := expect(field, wire, wireFixed32); err != nil {
				return err
			}
			v, err := r.fixed32()
			if err != nil {
				return err
			}
			score = math.Float32frombits(v)
		case 3:
			if err := expect(field, wire, wireVarint); err != nil {
				return err
			}
			v, err := r.varint()
			if err != nil {
				return err
			}
			if v < uint64(PieceNormal) || v > uint64(PieceByte) {
				return fmt.Errorf("unknown piece type %d", v)
			}
			typ = PieceType(v)
		default:
			if err := r.skip(wire); err != nil {
				return err
			}
		}
	}
	if !hasPiece || piece == "" {
		return errors.New("empty piece")
	}
	m.pieces = append(m.pieces, piece)
	m.scores = append(m.scores, score)
	m.types = append(m.types, typ)
	return nil
}

func (m *modelProto) parseTrainerSpec(b []byte) error {
	r := &protoReader{buf: b}
	for !r.done() {
		field, wire, err := r.key()
		if err != nil {
			return fmt.Errorf("trainer_spec: %w", err)
		}
		switch field {
		case 3, 24, 35:
			if err := expect(field, wire, wireVarint); err != nil {
				return fmt.Errorf("trainer_spec: %w", err)
			}
			v, err := r.varint()
			if err != nil {
				return fmt.Errorf("trainer_spec field %d: %w", field, err)
			}
			switch field {
			case 3:
				// Enums are int32 on the wire; anything outside the
				// declared range is rejected by the caller.
				m.modelType = int(int32(v))
			case 24:
				m.treatWhitespaceAsSuffix = v != 0
			case 35:
				m.byteFallback = v != 0
			}
		case 44, 45, 46, 47:
			if err := expect(field, wire, wireBytes); err != nil {
				return fmt.Errorf("trainer_spec: %w", err)
			}
			s, err := r.bytes()
			if err != nil {
				return fmt.Errorf("trainer_spec field %d: %w", field, err)
			}
			switch field {
			case 44:
				m.unkSurface = string(s)
			case 45:
				m.unkPiece = string(s)
			case 46:
				m.bosPiece = string(s)
			case 47:
				m.eosPiece = string(s)
			}
		default:
			if err := r.skip(wire); err != nil {
				return fmt.Errorf("trainer_spec field %d: %w", field, err)
			}
		}
	}
	return nil
}

func (m *modelProto) parseNormalizerSpec(b []byte) error {
	r := &protoReader{buf: b}
	for !r.done() {
		field, wire, err := r.key()
		if err != nil {
			return fmt.Errorf("normalizer_spec: %w", err)
		}
		switch field {
		case 1, 2:
			if err := expect(field, wire, wireBytes); err != nil {
				return fmt.Errorf("normalizer_spec: %w", err)
			}
			s, err := r.bytes()
			if err != nil {
				return fmt.Errorf("normalizer_spec field %d: %w", field, err)
			}
			if field == 1 {
				m.normalizerName = string(s)
			} else {
				m.precompiledCharsmap = s
			}
		case 3, 4, 5:
			if err := expect(field, wire, wireVarint); err != nil {
				return fmt.Errorf("normalizer_spec: %w", err)
			}
			v, err := r.varint()
			if err != nil {
				return fmt.Errorf("normalizer_spec field %d: %w", field, err)
			}
			switch field {
			case 3:
				m.addDummyPrefix = v != 0
			case 4:
				m.removeExtraWhitespaces = v != 0
			case 5:
				m.escapeWhitespaces = v != 0
			}
		default:
			if err := r.skip(wire); err != nil {
				return fmt.Errorf("normalizer_spec field %d: %w", field, err)
			}
		}
	}
	return nil
}
