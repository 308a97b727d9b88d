package checkpoint

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
)

// Hyper-parameters are checked when a config is parsed, whatever the
// family: a negative epsilon computes NaN, a layer count of 10⁹ allocates
// until the machine runs out of memory, and neither should get that far.

// Upper bounds far above any published model, low enough that what is
// allocated from them before the weights are read stays bounded.
const (
	maxLayers    = 1 << 14
	maxPositions = 1 << 24
	maxWidth     = 1 << 24 // hidden, intermediate, vocabulary sizes, heads
)

var (
	epsFields   = []string{"rms_norm_eps", "layer_norm_eps", "layer_norm_epsilon", "norm_epsilon", "norm_eps"}
	layerFields = []string{"num_hidden_layers", "n_layer", "num_layers"}
	posFields   = []string{"max_position_embeddings", "n_positions", "n_ctx"}
	widthFields = []string{"hidden_size", "n_embd", "intermediate_size", "n_inner", "ffn_dim", "vocab_size",
		"num_attention_heads", "n_head", "num_key_value_heads", "head_dim", "word_embed_proj_dim"}
)

// validate checks the hyper-parameters that are present (absent ones are
// the families' business).
func (c *Config) validate() error {
	for _, n := range epsFields {
		if !c.Has(n) {
			continue
		}
		v, err := c.Float(n)
		if err != nil {
			return err
		}
		if !(v > 0) {
			return fmt.Errorf("%s: field %q must be positive, got %v (a norm's epsilon keeps it from dividing by zero)", c.Path, n, v)
		}
	}
	bounded := func(names []string, lo, hi int) error {
		for _, n := range names {
			if !c.Has(n) {
				continue
			}
			v, err := c.Int(n)
			if err != nil {
				return err
			}
			if v < lo || v > hi {
				return fmt.Errorf("%s: field %q is %d, outside %d…%d", c.Path, n, v, lo, hi)
			}
		}
		return nil
	}
	if err := bounded(layerFields, 1, maxLayers); err != nil {
		return err
	}
	if err := bounded(posFields, 1, maxPositions); err != nil {
		return err
	}
	if err := bounded(widthFields, 1, maxWidth); err != nil {
		return err
	}
	heads, kv := c.firstInt("num_attention_heads", "n_head"), c.firstInt("num_key_value_heads")
	if heads > 0 && kv > 0 && heads%kv != 0 {
		return fmt.Errorf("%s: %d attention heads are not a multiple of num_key_value_heads %d", c.Path, heads, kv)
	}
	if hidden := c.firstInt("hidden_size", "n_embd"); heads > 0 && hidden > 0 && !c.Has("head_dim") && hidden%heads != 0 {
		return fmt.Errorf("%s: hidden size %d is not a multiple of %d attention heads (and no head_dim is given)", c.Path, hidden, heads)
	}
	return nil
}

// firstInt is the first of the named integer fields present, 0 if none.
func (c *Config) firstInt(names ...string) int {
	_, v, ok := c.lookup(names)
	if !ok {
		return 0
	}
	var f float64
	if json.Unmarshal(v, &f) != nil || f != math.Trunc(f) {
		return 0
	}
	return int(f)
}

// layerName matches the decoder-layer prefix of the families' tensor names.
var layerName = regexp.MustCompile(`^(?:model\.layers|model\.decoder\.layers|transformer\.h|gpt_neox\.layers|layers)\.(\d+)\.`)

// CheckLayers compares the config's layer count with the decoder layers
// the tensor names hold. Layers beyond the count would be dropped without
// a word, and a count beyond the layers would be allocated before the
// first missing tensor is noticed; both are errors. A checkpoint whose
// names have no recognised layer prefix is not checked.
func CheckLayers(c *Config, names []string) error {
	field, _, ok := c.lookup(layerFields)
	if !ok {
		return nil
	}
	want := c.firstInt(field)
	seen := map[int]bool{}
	for _, n := range names {
		if m := layerName.FindStringSubmatch(n); m != nil {
			i, err := strconv.Atoi(m[1])
			if err == nil {
				seen[i] = true
			}
		}
	}
	if len(seen) == 0 {
		return nil
	}
	idx := make([]int, 0, len(seen))
	for i := range seen {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	last := idx[len(idx)-1]
	switch {
	case last >= want:
		return fmt.Errorf("%s: %s is %d, but the weights hold %d layers (0…%d): layers %d…%d would be left out; fix the config or the checkpoint",
			c.Path, field, want, len(idx), last, want, last)
	case len(idx) < want:
		var missing []int
		for i := 0; i < want && len(missing) < 5; i++ {
			if !seen[i] {
				missing = append(missing, i)
			}
		}
		return fmt.Errorf("%s: %s is %d, but the weights hold only %d layers (missing layer %v…)", c.Path, field, want, len(idx), missing)
	}
	return nil
}
