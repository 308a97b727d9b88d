package model

import (
	"fmt"
	"math"
	"sync"

	"llmq/checkpoint"
	"llmq/nn"
)

// LoadLazy is Load for layer-by-layer work on models larger than memory:
// the linear layers of the decoder blocks are bound to the open checkpoint
// and read (converted to FP32) only when first used — Block.Materialize, or
// their first Forward. Quantizing block by block then holds one block's FP32
// weights at a time, plus what the blocks already quantized became. Shapes
// and dtypes are still checked when loading. Close the model to release the
// checkpoint. Families whose checkpoints fuse or transpose block weights
// (GPT-2, GPT-NeoX) and llama2.c files load eagerly.
func LoadLazy(path string) (*Model, error) {
	return load(path, true)
}

// Lazy reports whether m was loaded by LoadLazy: its block weights are read
// from the checkpoint as they are first used.
func (m *Model) Lazy() bool { return m.closer != nil }

// Close releases the checkpoint a lazily loaded model reads from.
func (m *Model) Close() error {
	if m.closer == nil {
		return nil
	}
	err := m.closer.Close()
	m.closer = nil
	return err
}

// LazyDense is an FP32 linear layer whose weights stay in the checkpoint
// until first use.
type LazyDense struct {
	src     checkpoint.Tensors
	name    string
	out, in int
	mu      sync.Mutex
	d       *nn.Dense
	err     error
}

func (l *LazyDense) In() int  { return l.in }
func (l *LazyDense) Out() int { return l.out }

// Name is the checkpoint module name of the layer.
func (l *LazyDense) Name() string { return l.name }

// Materialize reads the weights (once) and returns the FP32 layer.
func (l *LazyDense) Materialize() (*nn.Dense, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.d != nil || l.err != nil {
		return l.d, l.err
	}
	w, err := l.read(l.name+".weight", l.out*l.in)
	if err != nil {
		l.err = err
		return nil, err
	}
	var b []float32
	if _, ok := l.src.Info(l.name + ".bias"); ok {
		if b, err = l.read(l.name+".bias", l.out); err != nil {
			l.err = err
			return nil, err
		}
	}
	l.d = nn.NewDense(w, b, l.out, l.in)
	return l.d, nil
}

func (l *LazyDense) read(name string, n int) ([]float32, error) {
	v, _, err := l.src.Float32(name)
	if err != nil {
		return nil, err
	}
	if len(v) != n {
		return nil, fmt.Errorf("tensor %q has %d values, want %d", name, len(v), n)
	}
	for i, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return nil, fmt.Errorf("tensor %q holds a non-finite value (%v at element %d)", name, x, i)
		}
	}
	if e, ok := l.src.(interface{ Evict(string) }); ok {
		e.Evict(name)
	}
	return v, nil
}

// Forward materializes the weights on first use. A read error (a file
// changed or damaged after loading) poisons the output with NaN; callers
// that must report it call Materialize first.
func (l *LazyDense) Forward(y, x []float32, rows int) {
	d, err := l.Materialize()
	if err != nil {
		nan := float32(math.NaN())
		for i := range y[:rows*l.out] {
			y[i] = nan
		}
		return
	}
	d.Forward(y, x, rows)
}

// Materialize replaces the block's lazily bound linears by their FP32
// layers, reporting any read error.
func (b *Block) Materialize() error {
	for _, nl := range b.Linears() {
		if lz, ok := (*nl.Linear).(*LazyDense); ok {
			d, err := lz.Materialize()
			if err != nil {
				return fmt.Errorf("%s: %w", lz.name, err)
			}
			*nl.Linear = d
		}
	}
	return nil
}
