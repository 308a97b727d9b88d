package main

import "errors"

// exportCompressedTensors writes o.model as a compressed-tensors folder.
func exportCompressedTensors(o exportOptions) error {
	return errors.New("compressed-tensors export is not implemented yet")
}
