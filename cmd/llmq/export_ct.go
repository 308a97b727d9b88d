package main

import (
	"encoding/json"
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
	if err := checkModelFolder(o.model); err != nil {
		return err
	}
	if err := ctensors.Export(o.model, o.out); err != nil {
		return err
	}
	files, bytes, err := folderSize(o.out)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "wrote %s (compressed-tensors; %d files, %.1f MiB)\n", o.out, len(files), float64(bytes)/(1<<20))
	if o.json {
		return json.NewEncoder(os.Stdout).Encode(map[string]any{
			"model": o.model, "format": "compressed-tensors", "out": o.out, "bytes": bytes, "files": files,
		})
	}
	return nil
}

// folderSize lists the files of a folder and their total size.
func folderSize(dir string) (files []string, bytes int64, err error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, 0, err
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			return nil, 0, err
		}
		files = append(files, e.Name())
		bytes += info.Size()
	}
	return files, bytes, nil
}
