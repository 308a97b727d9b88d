package tokenizer

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// TestFromVocabRoundTrip: the Llama-2 tokenizer rebuilt from its flat
// vocabulary (what a GGUF file carries) encodes and decodes like the
// tokenizer.model it came from.
func TestFromVocabRoundTrip(t *testing.T) {
	orig, err := LoadSentencePiece(sharedFile(t, "tokenizers/llama2/tokenizer.model"))
	if err != nil {
		t.Fatal(err)
	}
	v := orig.Vocab()
	if v.BOS != 1 || v.EOS != 2 || !v.AddDummyPrefix || v.RemoveExtraWhitespaces {
		t.Fatalf("Llama-2 vocabulary: BOS %d EOS %d dummy prefix %v remove whitespace %v, want 1 2 true false",
			v.BOS, v.EOS, v.AddDummyPrefix, v.RemoveExtraWhitespaces)
	}
	rebuilt, err := FromVocab(v)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(sharedFile(t, "data/wikitext-2/wiki.test.tokens"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(raw[:200_000]) + " héllo  wörld 🦙 \u0001 tabs\tand   spaces"
	a, b := orig.Encode(text), rebuilt.Encode(text)
	if !slices.Equal(a, b) {
		t.Fatalf("rebuilt tokenizer encodes differently (%d vs %d ids)", len(b), len(a))
	}
	if orig.Decode(a) != rebuilt.Decode(a) {
		t.Error("rebuilt tokenizer decodes differently")
	}
	if rebuilt.BOS() != 1 || rebuilt.EOS() != 2 || rebuilt.UNK() != 0 || rebuilt.VocabSize() != 32000 {
		t.Errorf("special ids %d %d %d, size %d", rebuilt.BOS(), rebuilt.EOS(), rebuilt.UNK(), rebuilt.VocabSize())
	}
}

func TestFromVocabRejects(t *testing.T) {
	base := func() Vocab {
		return Vocab{
			Pieces: []string{"<unk>", "<s>", "</s>", "▁a"},
			Scores: []float32{0, 0, 0, -1},
			Types:  []PieceType{PieceUnknown, PieceControl, PieceControl, PieceNormal},
			BOS:    1, EOS: 2, AddDummyPrefix: true,
		}
	}
	if _, err := FromVocab(base()); err != nil {
		t.Fatalf("valid vocabulary rejected: %v", err)
	}
	tests := []struct {
		name string
		edit func(*Vocab)
		want string
	}{
		{"empty", func(v *Vocab) { *v = Vocab{} }, "empty"},
		{"lengths", func(v *Vocab) { v.Scores = v.Scores[:2] }, "2 scores"},
		{"type", func(v *Vocab) { v.Types[3] = 9 }, "unknown type 9"},
		{"bos range", func(v *Vocab) { v.BOS = 7 }, "outside the vocabulary"},
		{"bos not control", func(v *Vocab) { v.BOS = 3 }, "not a control piece"},
		{"no unk", func(v *Vocab) { v.Types[0] = PieceNormal }, "no unknown piece"},
		{"duplicate", func(v *Vocab) { v.Pieces[3] = "<unk>"; v.Types[3] = PieceNormal }, "defined twice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := base()
			tc.edit(&v)
			_, err := FromVocab(v)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestMarshalModel: a tokenizer serialized as tokenizer.model and parsed
// back is the same tokenizer, for the Llama-2 model and for a vocabulary
// without BOS/EOS and with other normalizer switches.
func TestMarshalModel(t *testing.T) {
	llama2, err := LoadSentencePiece(sharedFile(t, "tokenizers/llama2/tokenizer.model"))
	if err != nil {
		t.Fatal(err)
	}
	small, err := FromVocab(Vocab{
		Pieces: []string{"<unk>", "▁a", "b", "▁ab"},
		Scores: []float32{0, -1, -2, -0.5},
		Types:  []PieceType{PieceUnknown, PieceNormal, PieceNormal, PieceNormal},
		BOS:    -1, EOS: -1, AddDummyPrefix: false, RemoveExtraWhitespaces: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, tok := range map[string]*SentencePiece{"llama2": llama2, "small": small} {
		t.Run(name, func(t *testing.T) {
			back, err := parseSentencePiece(tok.MarshalModel())
			if err != nil {
				t.Fatal(err)
			}
			a, b := tok.Vocab(), back.Vocab()
			if !slices.Equal(a.Pieces, b.Pieces) || !slices.Equal(a.Scores, b.Scores) || !slices.Equal(a.Types, b.Types) ||
				a.BOS != b.BOS || a.EOS != b.EOS || a.AddDummyPrefix != b.AddDummyPrefix || a.RemoveExtraWhitespaces != b.RemoveExtraWhitespaces {
				t.Fatalf("vocabulary changed: BOS %d→%d EOS %d→%d", a.BOS, b.BOS, a.EOS, b.EOS)
			}
			if back.byteFallback != tok.byteFallback || back.UNK() != tok.UNK() {
				t.Errorf("byte fallback %v→%v, unk %d→%d", tok.byteFallback, back.byteFallback, tok.UNK(), back.UNK())
			}
			text := "  ab a b\tab 🦙 ünï"
			if !slices.Equal(tok.Encode(text), back.Encode(text)) {
				t.Errorf("encodes differently: %v vs %v", tok.Encode(text), back.Encode(text))
			}
		})
	}
}
