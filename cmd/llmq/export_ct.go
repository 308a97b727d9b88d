package main

import (
	"fmt"
	"os"

	"llmq/ctensors"
)

// exportCompressedTensors writes the llmq quantized folder o.model as a
// compressed-tensors folder o.out (package ctensors has the format, the
// layer mapping and what cannot be exported).
func exportCompressedTensors(o exportOptions) error {
	if o.typ != "" {
		return fmt.Errorf("--type applies to --format gguf; compressed-tensors takes its formats from the quantized folder")
	}
	if err := ctensors.Export(o.model, o.out); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "wrote %s (compressed-tensors)\n", o.out)
	return nil
}
