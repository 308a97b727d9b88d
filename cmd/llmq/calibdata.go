package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// calibDataHelp is the help of --calib-data.
const calibDataHelp = "calibration data: a plain text file, a JSON Lines file (.jsonl) with a \"text\" field per line, or a folder of text files (default: WikiText-2's validation split in the shared folder, never the test split; see LLMQ_SHARED in llmq --help)"

// readCalibText reads calibration data as users bring it: plain text, JSON
// Lines with a "text" field (llm-compressor's datasets as exported rows),
// or a folder whose regular files are text; rows and files are joined with
// blank lines, in name order.
func readCalibText(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if st.IsDir() {
		entries, err := os.ReadDir(path)
		if err != nil {
			return "", err
		}
		var names []string
		for _, e := range entries {
			if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") {
				names = append(names, e.Name())
			}
		}
		sort.Strings(names)
		if len(names) == 0 {
			return "", fmt.Errorf("%s: the folder holds no text files", path)
		}
		var parts []string
		for _, n := range names {
			t, err := readCalibText(filepath.Join(path, n))
			if err != nil {
				return "", err
			}
			parts = append(parts, t)
		}
		return strings.Join(parts, "\n\n"), nil
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	if ext := strings.ToLower(filepath.Ext(path)); ext != ".jsonl" && ext != ".ndjson" {
		return string(raw), nil
	}
	var parts []string
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 1<<20), 1<<30)
	for line := 1; sc.Scan(); line++ {
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var row struct {
			Text *string `json:"text"`
		}
		if err := json.Unmarshal(b, &row); err != nil {
			return "", fmt.Errorf("%s:%d: not a JSON object: %v", path, line, err)
		}
		if row.Text == nil {
			return "", fmt.Errorf("%s:%d: no \"text\" field (JSON Lines calibration data holds one text per line)", path, line)
		}
		parts = append(parts, *row.Text)
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	if len(parts) == 0 {
		return "", fmt.Errorf("%s: no rows", path)
	}
	return strings.Join(parts, "\n\n"), nil
}
