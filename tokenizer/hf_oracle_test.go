package tokenizer

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/text/unicode/norm"
)

// The oracles in testdata/hf were made by scripts/tokenizer-oracles.py with
// the tokenizers library (0.23.2) and transformers (5.17.0): small BPE
// vocabularies trained with the pipelines of GPT-2, Llama 3, Qwen2,
// Llama 2, Phi-3, Mistral and Gemma (see the script for each one), the ids
// and decodings tokenizers gives for a set of hard strings and for the
// whole WikiText-2 test file, and what transformers' AutoTokenizer gives
// with and without its default special tokens.

// hfOracle is one configuration's oracle.json.
type hfOracle struct {
	Name       string     `json:"name"`
	Texts      []string   `json:"texts"`
	IDs        [][]int    `json:"ids"`         // tokenizers, add_special_tokens=False
	Tokens     [][]string `json:"tokens"`      // their strings
	IDsSpecial [][]int    `json:"ids_special"` // tokenizers, with the post-processor
	Decoded    []string   `json:"decoded"`     // tokenizers' decode(ids, skip_special_tokens=True)
	// Expect is "tokenizers" when llmq must match the tokenizers library,
	// "transformers" when tokenizer_config.json changes the pipeline (then
	// only AutoTokenizer's results apply).
	Expect    string  `json:"expect"`
	Auto      [][]int `json:"auto"`       // AutoTokenizer encode (add_special_tokens=True)
	AutoPlain [][]int `json:"auto_plain"` // AutoTokenizer, add_special_tokens=False
	AutoClass string  `json:"auto_class"`
	AutoBOS   *int    `json:"auto_bos"`
	AutoEOS   *int    `json:"auto_eos"`
	AutoError string  `json:"auto_error"`
	Wiki      *struct {
		File              string `json:"file"`
		Count             int    `json:"count"`
		IDsSHA256         string `json:"ids_sha256"`
		DecodedEqualsText bool   `json:"decoded_equals_text"`
		DecodedSHA256     string `json:"decoded_sha256"`
	} `json:"wiki"`
}

func hfOracleNames(t *testing.T) []string {
	t.Helper()
	var m struct {
		Configs []string `json:"configs"`
		Failed  []string `json:"failed"`
	}
	data, err := os.ReadFile(filepath.Join("testdata", "hf", "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Failed) > 0 {
		t.Errorf("the oracle script failed on %v", m.Failed)
	}
	return m.Configs
}

func loadHFOracle(t *testing.T, name string) (*HuggingFace, *hfOracle, map[string]json.RawMessage) {
	t.Helper()
	dir := filepath.Join("testdata", "hf", name)
	tok, err := LoadHuggingFace(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	var o hfOracle
	data, err := os.ReadFile(filepath.Join(dir, "oracle.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &o); err != nil {
		t.Fatal(err)
	}
	var cfg map[string]json.RawMessage
	data, err = os.ReadFile(filepath.Join(dir, "tokenizer_config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	if len(o.IDs) != len(o.Texts) || len(o.Decoded) != len(o.Texts) || len(o.IDsSpecial) != len(o.Texts) {
		t.Fatalf("%s: oracle.json lists are not parallel", name)
	}
	return tok, &o, cfg
}

// readIDs reads a gzip'd int32 little-endian id file and checks its hash.
func readIDs(t *testing.T, path, sha string) []int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(raw); hex.EncodeToString(sum[:]) != sha {
		t.Fatalf("%s: sha256 %x, oracle.json says %s", path, sum, sha)
	}
	ids := make([]int, len(raw)/4)
	for i := range ids {
		ids[i] = int(int32(binary.LittleEndian.Uint32(raw[4*i:])))
	}
	return ids
}

func describeDiff(tok *HuggingFace, got, want []int) string {
	i := firstDiff(got, want)
	lo := max(0, i-3)
	show := func(ids []int) string {
		var b bytes.Buffer
		for _, id := range ids[lo:min(len(ids), i+4)] {
			fmt.Fprintf(&b, "%d(%q) ", id, tok.Token(id))
		}
		return b.String()
	}
	return fmt.Sprintf("first difference at %d of %d/%d: got %s, want %s", i, len(got), len(want), show(got), show(want))
}

// TestHFOracleStrings checks Encode, EncodeWithSpecialTokens, Decode, BOS
// and EOS on the hard strings of every configuration.
func TestHFOracleStrings(t *testing.T) {
	for _, name := range hfOracleNames(t) {
		t.Run(name, func(t *testing.T) {
			tok, o, cfg := loadHFOracle(t, name)
			_, explicitFlags := cfg["add_bos_token"]
			if _, ok := cfg["add_eos_token"]; ok {
				explicitFlags = true
			}
			compared := 0
			for i, text := range o.Texts {
				got := tok.Encode(text)
				want := o.IDs[i]
				if o.Expect == "transformers" {
					want = o.AutoPlain[i]
				}
				compared += len(want)
				if !slices.Equal(got, want) {
					t.Errorf("Encode(%q): %s", text, describeDiff(tok, got, want))
					continue
				}
				if o.Expect == "tokenizers" {
					for j, id := range got {
						// An lstrip/rstrip added token's string in an
						// encoding includes the white space it took.
						if tok.Token(id) != o.Tokens[i][j] && tok.Token(id) != strings.TrimSpace(o.Tokens[i][j]) {
							t.Errorf("Token(%d) = %q, tokenizers says %q", id, tok.Token(id), o.Tokens[i][j])
						}
					}
					if d := tok.Decode(got); d != o.Decoded[i] {
						t.Errorf("Decode(Encode(%q)) = %q, tokenizers decodes %q", text, d, o.Decoded[i])
					}
				}
				special := tok.EncodeWithSpecialTokens(text)
				if o.Expect == "tokenizers" && !explicitFlags && !slices.Equal(special, o.IDsSpecial[i]) {
					t.Errorf("EncodeWithSpecialTokens(%q) = %v, tokenizers' post-processor gives %v", text, special, o.IDsSpecial[i])
				}
				if o.Auto != nil && !slices.Equal(special, o.Auto[i]) {
					t.Errorf("EncodeWithSpecialTokens(%q) = %v, transformers gives %v", text, special, o.Auto[i])
				}
				compared += len(special)
			}
			if o.AutoError != "" {
				t.Errorf("no transformers oracle: %s", o.AutoError)
			} else {
				bos, eos := -1, -1
				if o.AutoBOS != nil {
					bos = *o.AutoBOS
				}
				if o.AutoEOS != nil {
					eos = *o.AutoEOS
				}
				if tok.BOS() != bos || tok.EOS() != eos {
					t.Errorf("BOS %d EOS %d; transformers (%s) says %d %d", tok.BOS(), tok.EOS(), o.AutoClass, bos, eos)
				}
			}
			t.Logf("%d strings, %d ids equal to the oracle", len(o.Texts), compared)
		})
	}
}

// TestHFOracleWikiText encodes the WikiText-2 test file as one string with
// every configuration and compares all ids, then the decoded text.
func TestHFOracleWikiText(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	text := readShared(t, "data/wikitext-2/wiki.test.tokens")
	for _, name := range hfOracleNames(t) {
		t.Run(name, func(t *testing.T) {
			tok, o, _ := loadHFOracle(t, name)
			if o.Wiki == nil {
				t.Skip("no WikiText oracle for this configuration")
			}
			want := readIDs(t, filepath.Join("testdata", "hf", name, o.Wiki.File), o.Wiki.IDsSHA256)
			if len(want) != o.Wiki.Count {
				t.Fatalf("%d ids in the file, oracle.json says %d", len(want), o.Wiki.Count)
			}
			got := tok.Encode(text)
			if !slices.Equal(got, want) {
				t.Fatalf("Encode(wiki.test.tokens): %s", describeDiff(tok, got, want))
			}
			dec := tok.Decode(got)
			if sum := sha256.Sum256([]byte(dec)); hex.EncodeToString(sum[:]) != o.Wiki.DecodedSHA256 {
				t.Errorf("Decode differs from tokenizers' decode (equal to the text: %v, tokenizers': %v)", dec == text, o.Wiki.DecodedEqualsText)
			}
			t.Logf("%d ids equal to tokenizers'; decode equals tokenizers' (and the text: %v)", len(got), dec == text)
		})
	}
}

// FuzzHuggingFace runs arbitrary text through the oracle configurations:
// no panics, ids in range, and byte-level ones round-trip.
func FuzzHuggingFace(f *testing.F) {
	for _, s := range roundTripTexts {
		f.Add(s)
	}
	f.Add("<s>a <mask>  qq<|assistant|> \xff\xfe<|im_start|>\u0301 ▁▁")
	var toks map[string]*HuggingFace
	f.Fuzz(func(t *testing.T, s string) {
		if toks == nil {
			toks = make(map[string]*HuggingFace)
			for _, name := range []string{"gpt2", "llama3", "qwen2", "llama2", "phi3", "mistral", "metaspace-always", "gemma"} {
				toks[name], _, _ = loadHFOracle(t, name)
			}
		}
		for name, tok := range toks {
			ids := tok.EncodeWithSpecialTokens(s)
			for _, id := range ids {
				if id < 0 || id >= tok.VocabSize() {
					t.Fatalf("%s: id %d out of range for %q", name, id, s)
				}
			}
			// Byte-level pipelines lose nothing but what NFC changes
			// (Qwen2) and what added tokens take.
			if tok.byteLevel && !strings.ContainsAny(s, "<") && norm.NFC.IsNormalString(s) {
				if got := tok.Decode(tok.Encode(s)); got != s {
					t.Fatalf("%s: Decode(Encode(%q)) = %q", name, s, got)
				}
			}
		}
	})
}
