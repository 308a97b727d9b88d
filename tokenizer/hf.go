package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// HuggingFace is a BPE tokenizer read from a Hugging Face tokenizer.json,
// the one format every recent checkpoint ships: byte-level BPE (GPT-2,
// Llama 3, Qwen2/Qwen3 and relatives) and SentencePiece-style BPE with byte
// fallback (Llama 2, Mistral, Gemma and Phi-3 in their converted form).
//
// Encoding follows the tokenizers library's pipeline step by step, because
// a perplexity is only comparable when the ids are identical:
//
//  1. added tokens that are not "normalized" are cut out of the raw text
//     (leftmost, then longest, honouring single_word, lstrip and rstrip);
//  2. each remaining segment is normalized (NFC, Prepend, Replace, ...) and
//     the "normalized" added tokens are cut out of the result;
//  3. the pre-tokenizer splits each segment (ByteLevel with GPT-2's regex,
//     Split on the Llama-3 or Qwen2 regex, Metaspace, ...);
//  4. the BPE model encodes each pre-token (byte-level alphabet, byte
//     fallback to <0xNN> tokens, unk fusing, ignore_merges).
//
// Encode stops there, as the Tokenizer interface asks: no BOS or EOS.
// EncodeWithSpecialTokens adds what transformers adds by default: the
// post-processor's template (Llama 3 writes its <|begin_of_text|> there).
// tokenizer_config.json's add_bos_token and add_eos_token replace the
// template with BOS and EOS as they say where transformers lets them: for
// model-specific tokenizer classes, and for any class when tokenizer.json
// has no post-processor (its generic class, PreTrainedTokenizerFast, keeps
// the file's template otherwise).
//
// tokenizer_config.json (read when it lies beside the tokenizer.json) also
// supplies bos_token and eos_token (null means none), split_special_tokens
// and add_prefix_space. The last follows transformers: its model-specific
// classes (GPT2Tokenizer, LlamaTokenizer, ...) rebuild the pre-tokenizer
// with that flag, so it overrides tokenizer.json's ByteLevel
// add_prefix_space and Metaspace prepend_scheme (false also removes a
// Prepend("▁") normalizer and the decoder's matching Strip); with
// tokenizer_class PreTrainedTokenizerFast (or none) tokenizer.json is used
// as it is and the flag is ignored, again as transformers does.
//
// Not reproduced: transformers v5's model-specific classes rebuild the
// whole pipeline rather than reading tokenizer.json's (LlamaTokenizer, for
// one, always uses Metaspace with prepend_scheme "first"), which differs
// from the file's own pipeline next to added tokens when the file uses the
// legacy Prepend normalizer; llmq follows the file. tokenizer.json's
// truncation and padding are ignored, as transformers ignores them unless
// asked to truncate.
//
// Anything else the pipeline could contain (another model type, a regex
// this package does not know, a Lowercase normalizer, ...) is rejected
// when loading, naming the file and the component, rather than encoded
// differently.
//
// A HuggingFace is immutable after loading and safe for concurrent use.
type HuggingFace struct {
	model      *bpeModel
	normalizer normalizer     // nil: none
	pre        []preTokenizer // flattened; empty: the segment is one pre-token
	byteLevel  bool           // pre ends with ByteLevel: the model reads bytes
	decoder    decoder        // nil: tokens joined by spaces, as tokenizers does

	tokens  []string // id -> token string, as Decode sees it
	present []bool   // id -> some token has it
	skip    []bool   // id -> Decode drops it (a special added token)

	raw, normalized addedMatcher
	splitSpecial    bool // tokenizer_config.json split_special_tokens: specials are text

	bosID, eosID   int
	prefix, suffix []int // what EncodeWithSpecialTokens adds
	hasPost        bool  // tokenizer.json has a post_processor
}

var (
	_ Tokenizer = (*HuggingFace)(nil)
	_ BOSAdder  = (*HuggingFace)(nil)
)

// ByteLevelBPE is the former name of HuggingFace.
//
// Deprecated: use HuggingFace.
type ByteLevelBPE = HuggingFace

// LoadByteLevelBPE is the former name of LoadHuggingFace.
//
// Deprecated: use LoadHuggingFace, which reads every pipeline this package
// supports, byte-level or not.
func LoadByteLevelBPE(path string) (*HuggingFace, error) { return LoadHuggingFace(path) }

// LoadHuggingFace reads a tokenizer.json and, if there is one in the same
// folder, its tokenizer_config.json. Errors name the file.
func LoadHuggingFace(path string) (*HuggingFace, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(filepath.Dir(path), "tokenizer_config.json")
	cfg, err := os.ReadFile(cfgPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	t, err := parseHuggingFace(data, cfg)
	if err != nil {
		var ce configError
		if errors.As(err, &ce) {
			return nil, fmt.Errorf("%s: %w", cfgPath, err)
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// configError marks an error in tokenizer_config.json rather than in
// tokenizer.json.
type configError struct{ error }

func (e configError) Unwrap() error { return e.error }

// hfFile is the part of tokenizer.json that we read.
type hfFile struct {
	AddedTokens   []hfAddedToken  `json:"added_tokens"`
	Normalizer    json.RawMessage `json:"normalizer"`
	PreTokenizer  json.RawMessage `json:"pre_tokenizer"`
	PostProcessor json.RawMessage `json:"post_processor"`
	Decoder       json.RawMessage `json:"decoder"`
	Model         *hfModel        `json:"model"`
}

type hfAddedToken struct {
	ID         int    `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	Lstrip     bool   `json:"lstrip"`
	Rstrip     bool   `json:"rstrip"`
	Normalized *bool  `json:"normalized"` // default: !special
	Special    bool   `json:"special"`
}

// parseHuggingFace builds a tokenizer from the bytes of a tokenizer.json and
// of its tokenizer_config.json (nil if there is none).
func parseHuggingFace(data, cfg []byte) (*HuggingFace, error) {
	var f hfFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("not a tokenizer.json: %w", err)
	}
	if f.Model == nil {
		return nil, errors.New("tokenizer.json has no model")
	}
	m, err := newBPEModel(f.Model)
	if err != nil {
		return nil, err
	}
	t := &HuggingFace{model: m, bosID: -1, eosID: -1}
	if !isNull(f.Normalizer) {
		if t.normalizer, err = parseNormalizer(f.Normalizer, "normalizer"); err != nil {
			return nil, err
		}
	}
	if !isNull(f.PreTokenizer) {
		p, err := parsePreTokenizer(f.PreTokenizer, "pre_tokenizer")
		if err != nil {
			return nil, err
		}
		t.pre = flattenPre(p, nil)
		for i, q := range t.pre {
			if _, ok := q.(*preByteLevel); ok {
				if i != len(t.pre)-1 {
					return nil, errors.New("pre_tokenizer: ByteLevel followed by other pre-tokenizers is not supported")
				}
				t.byteLevel = true
			}
		}
	}
	if !isNull(f.Decoder) {
		if t.decoder, err = parseDecoder(f.Decoder, "decoder"); err != nil {
			return nil, err
		}
	}
	if !isNull(f.PostProcessor) {
		t.hasPost = true
		if t.prefix, t.suffix, err = parsePostProcessor(f.PostProcessor, "post_processor"); err != nil {
			return nil, err
		}
	}
	if err := t.setTokens(f.AddedTokens); err != nil {
		return nil, err
	}
	var c *tokenizerConfig
	if cfg != nil {
		if c, err = parseTokenizerConfig(cfg); err != nil {
			return nil, configError{err}
		}
		c.applyPrefixSpace(t)
	}
	t.setAdded(f.AddedTokens)
	for _, id := range slices.Concat(t.prefix, t.suffix) {
		if id < 0 || id >= len(t.tokens) || !t.present[id] {
			return nil, fmt.Errorf("post_processor adds id %d, which no token has", id)
		}
	}
	t.setSpecialIDs(c)
	return t, nil
}

// setTokens fills the id tables from the vocabulary and the added tokens,
// which may lie beyond it or replace one of its strings.
func (t *HuggingFace) setTokens(added []hfAddedToken) error {
	n := 0
	for _, id := range t.model.vocab {
		n = max(n, id+1)
	}
	for _, a := range added {
		if a.ID < 0 || a.ID > 1<<24 {
			return fmt.Errorf("added token %q has invalid id %d", a.Content, a.ID)
		}
		if a.Content == "" {
			return fmt.Errorf("added token %d is empty", a.ID)
		}
		n = max(n, a.ID+1)
	}
	if n == 0 {
		return errors.New("tokenizer.json has an empty vocabulary")
	}
	t.tokens = make([]string, n)
	t.present = make([]bool, n)
	t.skip = make([]bool, n)
	for tok, id := range t.model.vocab {
		if t.present[id] {
			return fmt.Errorf("id %d is used by both %q and %q", id, t.tokens[id], tok)
		}
		t.tokens[id], t.present[id] = tok, true
	}
	return nil
}

// setAdded builds the two added-token matchers (raw and normalized) and the
// decoding tables; it runs after tokenizer_config.json may have changed the
// normalizer, because a normalized added token is matched by its
// normalized content.
func (t *HuggingFace) setAdded(added []hfAddedToken) {
	special := make(map[string]bool)
	var raw, normd []*addedToken
	for _, a := range added {
		normalized := !a.Special
		if a.Normalized != nil {
			normalized = *a.Normalized
		}
		tok := &addedToken{id: a.ID, content: a.Content, special: a.Special,
			singleWord: a.SingleWord, lstrip: a.Lstrip, rstrip: a.Rstrip}
		form := a.Content
		if normalized {
			if t.normalizer != nil {
				form = t.normalizer.normalize(a.Content)
			}
			tok.content = form
			if form != "" {
				normd = append(normd, tok)
			}
		} else {
			raw = append(raw, tok)
		}
		// tokenizers' id_to_token gives the normalized form.
		t.tokens[a.ID], t.present[a.ID] = form, true
		if a.Special {
			special[a.Content] = true
		}
	}
	t.raw, t.normalized = newAddedMatcher(raw), newAddedMatcher(normd)
	for id, tok := range t.tokens {
		t.skip[id] = t.present[id] && special[tok]
	}
}

// setSpecialIDs decides BOS, EOS and what EncodeWithSpecialTokens adds.
func (t *HuggingFace) setSpecialIDs(c *tokenizerConfig) {
	look := func(names ...string) int {
		for _, n := range names {
			if id, ok := t.idOf(n); ok {
				return id
			}
		}
		return -1
	}
	// With the generic class, transformers has no BOS or EOS the config
	// does not name; model-specific classes have defaults, which the
	// conventional names approximate.
	configOnly := c != nil && c.genericClass()
	switch {
	case c != nil && c.hasBOS:
		t.bosID = t.configID(c.bos)
	case configOnly:
	case len(t.prefix) > 0:
		t.bosID = t.prefix[0]
	default:
		t.bosID = look("<|begin_of_text|>", "<s>", "<bos>", "<|endoftext|>")
	}
	switch {
	case c != nil && c.hasEOS:
		t.eosID = t.configID(c.eos)
	case configOnly:
	default:
		t.eosID = look("<|end_of_text|>", "</s>", "<eos>", "<|endoftext|>")
	}
	if c == nil {
		return
	}
	t.splitSpecial = c.splitSpecial
	if (c.addBOS != nil || c.addEOS != nil) && (!c.genericClass() || !t.hasPost) {
		// transformers rebuilds the post-processor from these two flags
		// when its model-specific classes are given either, and when
		// tokenizer.json has no post-processor; its generic class keeps
		// tokenizer.json's template otherwise (transformers 5.17 ignores
		// add_eos_token=true and add_bos_token=false there).
		t.prefix, t.suffix = nil, nil
		if c.addBOS != nil && *c.addBOS && t.bosID >= 0 {
			t.prefix = []int{t.bosID}
		}
		if c.addEOS != nil && *c.addEOS && t.eosID >= 0 {
			t.suffix = []int{t.eosID}
		}
	}
}

func (t *HuggingFace) configID(name *string) int {
	if name == nil {
		return -1
	}
	if id, ok := t.idOf(*name); ok {
		return id
	}
	return -1
}

// idOf finds a token by its content: added tokens first, then the model's
// vocabulary, as tokenizers' token_to_id does.
func (t *HuggingFace) idOf(s string) (int, bool) {
	if id, ok := t.raw.byContent[s]; ok {
		return id, true
	}
	if id, ok := t.normalized.byContent[s]; ok {
		return id, true
	}
	id, ok := t.model.vocab[s]
	return id, ok
}

// VocabSize is the number of ids, added tokens included.
func (t *HuggingFace) VocabSize() int { return len(t.tokens) }

// BOS is the beginning-of-sequence id, or -1. It is tokenizer_config.json's
// bos_token (null: none; a generic-class config without the key: none, as
// in transformers); without a config, or for a model-specific class that
// does not say, the post-processor's first special token, else a token with
// a conventional name (<|begin_of_text|>, <s>, <bos>, <|endoftext|>).
func (t *HuggingFace) BOS() int { return t.bosID }

// EOS is the end-of-sequence id, or -1, decided as BOS is (without the
// post-processor step).
func (t *HuggingFace) EOS() int { return t.eosID }

// AddsBOS reports whether EncodeWithSpecialTokens starts with BOS, i.e.
// whether transformers' encode puts BOS in front of a text by default.
func (t *HuggingFace) AddsBOS() bool {
	return t.bosID >= 0 && len(t.prefix) > 0 && t.prefix[0] == t.bosID
}

// AddsEOS reports whether EncodeWithSpecialTokens ends with EOS.
func (t *HuggingFace) AddsEOS() bool {
	return t.eosID >= 0 && len(t.suffix) > 0 && t.suffix[len(t.suffix)-1] == t.eosID
}

// EncodeWithSpecialTokens is Encode with the special tokens transformers
// adds by default (add_special_tokens=True): the post-processor's template,
// or BOS and EOS as tokenizer_config.json's add_bos_token and add_eos_token
// say (see HuggingFace for when those apply).
func (t *HuggingFace) EncodeWithSpecialTokens(text string) []int {
	return slices.Concat(t.prefix, t.Encode(text), t.suffix)
}

// Token returns the string of id as tokenizers' id_to_token does (byte-level
// vocabularies spell bytes in GPT-2's alphabet, SentencePiece-style ones
// spaces as "▁"), or "" if no token has that id.
func (t *HuggingFace) Token(id int) string {
	if id < 0 || id >= len(t.tokens) {
		return ""
	}
	return t.tokens[id]
}

// Encode tokenizes text without adding BOS/EOS.
func (t *HuggingFace) Encode(text string) []int {
	var (
		out    []int
		pieces []piece
		cache  = make(map[string][]int)
	)
	encodeSegment := func(s string, first bool) {
		pieces = t.preTokenize(piece{s, first}, pieces[:0])
		for _, p := range pieces {
			ids, ok := cache[p.s]
			if !ok {
				ids = t.model.encodeWord(p.s, t.byteLevel, nil)
				cache[p.s] = ids
			}
			out = append(out, ids...)
		}
	}
	for _, seg := range t.raw.split(text, t.splitSpecial, nil) {
		if seg.id >= 0 {
			out = append(out, seg.id)
			continue
		}
		s := text[seg.start:seg.end]
		first := seg.start == 0
		if t.normalizer != nil {
			s = t.normalizer.normalize(s)
		}
		for _, seg2 := range t.normalized.split(s, t.splitSpecial, nil) {
			if seg2.id >= 0 {
				out = append(out, seg2.id)
				continue
			}
			encodeSegment(s[seg2.start:seg2.end], first && seg2.start == 0)
		}
	}
	return out
}

// preTokenize applies the pre-tokenizers in order, dropping empty pieces.
func (t *HuggingFace) preTokenize(p piece, out []piece) []piece {
	if p.s == "" {
		return out
	}
	if len(t.pre) == 0 {
		return append(out, p)
	}
	cur := []piece{p}
	for i, q := range t.pre {
		var next []piece
		if i == len(t.pre)-1 {
			next = out
		}
		for _, c := range cur {
			next = q.split(c, next)
		}
		cur = next
	}
	return cur
}

// Decode maps ids to text through the tokenizer's decoder, dropping
// special added tokens and unknown ids (tokenizers' decode with
// skip_special_tokens=True).
func (t *HuggingFace) Decode(ids []int) string {
	toks := make([]string, 0, len(ids))
	for _, id := range ids {
		if id >= 0 && id < len(t.tokens) && t.present[id] && !t.skip[id] {
			toks = append(toks, t.tokens[id])
		}
	}
	if t.decoder == nil {
		return strings.Join(toks, " ")
	}
	return strings.Join(t.decoder.decodeChain(toks), "")
}

// ---- tokenizer_config.json -------------------------------------------------

// tokenizerConfig is what llmq reads from tokenizer_config.json.
type tokenizerConfig struct {
	class          string
	hasBOS, hasEOS bool
	bos, eos       *string // nil: null
	addBOS, addEOS *bool
	addPrefixSpace *bool
	splitSpecial   bool
}

func parseTokenizerConfig(data []byte) (*tokenizerConfig, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("not a tokenizer_config.json: %w", err)
	}
	c := &tokenizerConfig{}
	var err error
	str := func(key string) (*string, bool, error) {
		v, ok := raw[key]
		if !ok {
			return nil, false, nil
		}
		if isNull(v) {
			return nil, true, nil
		}
		var s string
		if json.Unmarshal(v, &s) == nil {
			return &s, true, nil
		}
		var obj struct {
			Content *string `json:"content"`
		}
		if json.Unmarshal(v, &obj) == nil && obj.Content != nil {
			return obj.Content, true, nil
		}
		return nil, true, fmt.Errorf("%s is neither a string nor a token object", key)
	}
	flag := func(key string) (*bool, error) {
		v, ok := raw[key]
		if !ok || isNull(v) {
			return nil, nil
		}
		var b bool
		if err := json.Unmarshal(v, &b); err != nil {
			return nil, fmt.Errorf("%s is not a boolean", key)
		}
		return &b, nil
	}
	if s, _, err := str("tokenizer_class"); err != nil {
		return nil, err
	} else if s != nil {
		c.class = *s
	}
	if c.bos, c.hasBOS, err = str("bos_token"); err != nil {
		return nil, err
	}
	if c.eos, c.hasEOS, err = str("eos_token"); err != nil {
		return nil, err
	}
	if c.addBOS, err = flag("add_bos_token"); err != nil {
		return nil, err
	}
	if c.addEOS, err = flag("add_eos_token"); err != nil {
		return nil, err
	}
	if c.addPrefixSpace, err = flag("add_prefix_space"); err != nil {
		return nil, err
	}
	split, err := flag("split_special_tokens")
	if err != nil {
		return nil, err
	}
	c.splitSpecial = split != nil && *split
	return c, nil
}

// genericClass reports whether transformers loads tokenizer.json as it is
// for this tokenizer_class, rather than through a model-specific class that
// rebuilds the pre-tokenizer from the config's flags.
func (c *tokenizerConfig) genericClass() bool {
	switch c.class {
	case "", "PreTrainedTokenizerFast", "TokenizersBackend":
		return true
	}
	return false
}

// applyPrefixSpace applies add_prefix_space for model-specific classes.
func (c *tokenizerConfig) applyPrefixSpace(t *HuggingFace) {
	if c.addPrefixSpace == nil || c.genericClass() {
		return
	}
	on := *c.addPrefixSpace
	for _, p := range t.pre {
		switch p := p.(type) {
		case *preByteLevel:
			p.addPrefixSpace = on
		case *preMetaspace:
			if !on {
				p.scheme = prependNever
			} else if p.scheme == prependNever {
				p.scheme = prependFirst
			}
		}
	}
	if on {
		return
	}
	t.normalizer = dropPrepend(t.normalizer)
	t.decoder = dropStrip(t.decoder)
}

// dropPrepend removes a Prepend("▁") normalizer, the legacy spelling of the
// SentencePiece dummy prefix.
func dropPrepend(n normalizer) normalizer {
	switch n := n.(type) {
	case normPrepend:
		if n.prefix == spaceSymbol {
			return nil
		}
	case normSequence:
		var out normSequence
		for _, x := range n {
			if x = dropPrepend(x); x != nil {
				out = append(out, x)
			}
		}
		return out
	}
	return n
}

// dropStrip removes the decoder's Strip of the leading space that the dummy
// prefix became, and makes a Metaspace decoder keep its first "▁".
func dropStrip(d decoder) decoder {
	switch d := d.(type) {
	case decStrip:
		if d.char == ' ' && d.stop == 0 {
			return nil
		}
	case decMetaspace:
		d.scheme = prependNever
		return d
	case decSequence:
		var out decSequence
		for _, x := range d {
			if x = dropStrip(x); x != nil {
				out = append(out, x)
			}
		}
		return out
	}
	return d
}
