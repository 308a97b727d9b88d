package checkpoint

import (
	"slices"
	"strings"
	"testing"
)

func TestConfigNested(t *testing.T) {
	c, err := ParseConfig("config.json", []byte(`{"model_type":"x","rope_parameters":{"full_attention":{"factor":"8","long_factor":[1,2.5]},"sliding_attention":null},
		"layer_types":["full_attention"],"bad":[1,"a"]}`))
	if err != nil {
		t.Fatal(err)
	}
	rp, ok, err := c.Object("rope_parameters")
	if err != nil || !ok {
		t.Fatalf("rope_parameters: %v %v", ok, err)
	}
	if _, ok, err := rp.Object("sliding_attention"); ok || err != nil || !rp.Present("sliding_attention") || rp.Has("sliding_attention") {
		t.Errorf("a null entry: ok %v err %v", ok, err)
	}
	full, _, _ := rp.Object("full_attention")
	if _, err := full.Float("factor"); err == nil || !strings.HasPrefix(err.Error(), `config.json: rope_parameters.full_attention: field "factor"`) {
		t.Errorf("nested error %v does not name the file and the path", err)
	}
	if f, err := full.Floats("long_factor"); err != nil || !slices.Equal(f, []float64{1, 2.5}) {
		t.Errorf("Floats: %v %v", f, err)
	}
	if _, err := c.Floats("bad"); err == nil || !strings.Contains(err.Error(), "element 1") {
		t.Errorf("Floats of a mixed list: %v", err)
	}
	if lt, err := c.Strings("layer_types"); err != nil || !slices.Equal(lt, []string{"full_attention"}) {
		t.Errorf("Strings: %v %v", lt, err)
	}
	if _, _, err := c.Object("layer_types"); err == nil {
		t.Error("Object of a list: want an error")
	}
	keys := c.Keys()
	slices.Sort(keys)
	if !slices.Equal(keys, []string{"bad", "layer_types", "model_type", "rope_parameters"}) {
		t.Errorf("Keys %v", keys)
	}
}
