package main

import (
	"fmt"
	"os"
	"path/filepath"
)

// modelInputs lists the files a model at path is read from: every file of
// a model folder, or the file itself and the tokenizer files beside it.
func modelInputs(path string) []string {
	st, err := os.Stat(path)
	if err != nil {
		return nil
	}
	if !st.IsDir() {
		out := []string{path}
		for _, f := range []string{"tokenizer.bin", "tokenizer.model", "tokenizer.json"} {
			out = append(out, filepath.Join(filepath.Dir(path), f))
		}
		return out
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		out = append(out, filepath.Join(path, e.Name()))
	}
	return out
}

// checkOutputFile refuses an output file that would destroy something: a
// folder, any of the input files (even with force: they are compared by
// identity, so links and other spellings of the same file count), or
// another existing file unless force.
func checkOutputFile(flagName, out string, force bool, inputs []string) error {
	st, err := os.Stat(out)
	if err != nil {
		if !os.IsNotExist(err) {
			return err
		}
		parent := filepath.Dir(filepath.Clean(out))
		if pst, err := os.Stat(parent); err != nil || !pst.IsDir() {
			return fmt.Errorf("%s %s: folder %s does not exist", flagName, out, parent)
		}
		return nil
	}
	if st.IsDir() {
		return fmt.Errorf("%s %s is a folder; the output is one file: give a file name such as %s", flagName, out, filepath.Join(out, "model.gguf"))
	}
	for _, in := range inputs {
		if ist, err := os.Stat(in); err == nil && os.SameFile(st, ist) {
			return fmt.Errorf("%s %s is %s, an input of this command; refusing to write over it", flagName, out, in)
		}
	}
	if !force {
		return fmt.Errorf("%s %s already exists; pass --force to replace it", flagName, out)
	}
	return nil
}
