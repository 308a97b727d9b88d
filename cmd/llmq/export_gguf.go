package main

import "errors"

// exportGGUF writes o.model as a GGUF file.
func exportGGUF(o exportOptions) error {
	return errors.New("GGUF export is not implemented yet")
}
