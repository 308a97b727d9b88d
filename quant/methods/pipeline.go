package methods

import (
	"fmt"

	"llmq/calib"
	"llmq/model"
)

// Run applies the stages to every decoder block in order, then the
// model-level parts of the stages that have them. Calibration sequences are
// embedded once and carried from block to block through the blocks as they
// are after quantization (so each block is calibrated on the inputs it will
// really see); they are only computed when some stage needs them.
// progress, if set, is called after each block.
func Run(m *model.Model, calibration [][]int, stages []Method, progress func(done, total int)) error {
	return RunWith(m, calibration, stages, progress, RunOptions{})
}

// RunOptions tune Run.
type RunOptions struct {
	// RoutedOnly calibrates each expert of a mixture of experts on the
	// tokens the router sends it, instead of on every calibration token
	// (model.MoE.AllExperts, llm-compressor's default, which gives rarely
	// chosen experts' statistics and Hessians as many samples as the
	// others; the block's output is the same either way).
	RoutedOnly bool
}

// RunWith is Run with options.
func RunWith(m *model.Model, calibration [][]int, stages []Method, progress func(done, total int), opt RunOptions) error {
	need := false
	for _, s := range stages {
		need = need || s.NeedsCalibration()
	}
	var acts *calib.Activations
	if need {
		if len(calibration) == 0 {
			return fmt.Errorf("the recipe needs calibration data and none was given")
		}
		var err error
		if acts, err = calib.Embed(m, calibration); err != nil {
			return fmt.Errorf("calibration: %w", err)
		}
	}
	runner := m.NewBlockRunner()
	for i, b := range m.Blocks {
		// A lazily loaded block is read now; finished blocks keep only
		// their quantized form (see releaseCaches), so memory holds one
		// block's FP32 weights at a time.
		if err := b.Materialize(); err != nil {
			return err
		}
		layer := &Layer{Model: m, Index: i, Block: b, Runner: runner, Inputs: acts}
		if b.MoE != nil {
			b.MoE.AllExperts = !opt.RoutedOnly
		}
		for _, s := range stages {
			if err := s.ApplyLayer(layer); err != nil {
				return fmt.Errorf("%s: %w", s.Name(), err)
			}
		}
		if b.MoE != nil {
			b.MoE.AllExperts = false // the output is the same: propagate at routed cost
		}
		if acts != nil {
			calib.Propagate(runner, i, acts)
		}
		releaseCaches(b)
		if progress != nil {
			progress(i+1, len(m.Blocks))
		}
	}
	for _, s := range stages {
		if mm, ok := s.(ModelMethod); ok {
			if err := mm.ApplyModel(m); err != nil {
				return fmt.Errorf("%s: %w", s.Name(), err)
			}
		}
	}
	return nil
}

// releaseCaches drops the FP32 weight copies that quantized layers keep
// for the reference forward path; they are rebuilt on the next use.
func releaseCaches(b *model.Block) {
	for _, nl := range b.Linears() {
		l := *nl.Linear
		if lr, ok := l.(*LowRankLinear); ok {
			l = lr.Base
		}
		if q, ok := l.(interface{ ReleaseCache() }); ok {
			q.ReleaseCache()
		}
	}
}
