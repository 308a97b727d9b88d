package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"io"
	"os"
	"strconv"
)

func init() {
	var modelPath, file, tokPath *string
	var noBOS, asJSON *bool
	commands = append(commands, &command{
		name:    "tokenize",
		summary: "print the token ids of a text (BOS first, like llama-tokenize)",
		usage:   "--model DIR [--file F]",
		help: `Encodes text with the model's tokenizer and prints the ids space-separated on
one line, BOS first, exactly as the evaluation protocol feeds them to the
model. The text is --file, or standard input when no file is given.

Example:
  echo -n "Hello world" | llmq tokenize --model ../shared/models/wiki-llama-25m`,
		flags: func(fs *flag.FlagSet) {
			modelPath = fs.String("model", "", "model folder (or llama2.c .bin) whose tokenizer to use")
			file = fs.String("file", "", "text file (default: standard input)")
			tokPath = fs.String("tokenizer", "", "tokenizer file or folder (overrides --model)")
			noBOS = fs.Bool("no-bos", false, "do not prepend BOS")
			asJSON = fs.Bool("json", false, "print the ids, their count and (SentencePiece) pieces as JSON on stdout")
		},
		run: func(fs *flag.FlagSet, args []string) error {
			if len(args) > 0 {
				return usagef("unexpected arguments %q", args)
			}
			if *modelPath == "" && *tokPath == "" {
				return usagef("--model or --tokenizer is required")
			}
			tok, err := loadTokenizer(*modelPath, *tokPath)
			if err != nil {
				return err
			}
			var text []byte
			if *file != "" {
				text, err = os.ReadFile(*file)
			} else {
				text, err = io.ReadAll(os.Stdin)
			}
			if err != nil {
				return err
			}
			ids := tok.Encode(string(text))
			if !*noBOS && tok.BOS() >= 0 {
				ids = append([]int{tok.BOS()}, ids...)
			}
			if *asJSON {
				rep := map[string]any{"ids": ids, "tokens": len(ids), "bos": !*noBOS && tok.BOS() >= 0, "vocab_size": tok.VocabSize()}
				if pt, ok := tok.(interface{ Piece(id int) string }); ok {
					pieces := make([]string, len(ids))
					for i, id := range ids {
						pieces[i] = pt.Piece(id)
					}
					rep["pieces"] = pieces
				}
				if ids == nil {
					rep["ids"] = []int{}
				}
				enc := json.NewEncoder(os.Stdout)
				enc.SetEscapeHTML(false) // pieces such as <s> stay readable
				return enc.Encode(rep)
			}
			w := bufio.NewWriter(os.Stdout)
			for i, id := range ids {
				if i > 0 {
					w.WriteByte(' ')
				}
				w.WriteString(strconv.Itoa(id))
			}
			w.WriteByte('\n')
			return w.Flush()
		},
	})
}
