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
const calibDataHelp = "calibration data: a plain text file, a JSON Lines file (.jsonl) with a \"text\" field per line (or \"input_ids\": token ids already tokenized, used as they are), or a folder of text files (default: WikiText-2's validation split in the shared folder, never the test split; see LLMQ_SHARED in llmq --help)"

// readCalibText reads calibration data as users bring it: plain text, JSON
// Lines with a "text" field (llm-compressor's datasets as exported rows),
// or a folder whose regular files are text; rows and files are joined with
// blank lines, in name order.
func readCalibText(path string) (string, error) {
	text, ids, err := readCalib(path)
	if err == nil && ids != nil {
		return "", fmt.Errorf("%s: holds token ids, not text", path)
	}
	return text, err
}

// readCalib is readCalibText for data that may also be pre-tokenized:
// JSON Lines rows with an "input_ids" array give ids (rows concatenated,
// each as it is: a row carries its own BOS if it wants one) and no text.
func readCalib(path string) (string, []int, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", nil, err
	}
	if !st.IsDir() {
		if isJSONL(path) {
			return readJSONL(path)
		}
		raw, err := os.ReadFile(path)
		return string(raw), nil, err
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return "", nil, err
	}
	var names []string
	for _, e := range entries {
		if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		return "", nil, fmt.Errorf("%s: the folder holds no text files", path)
	}
	var parts []string
	for _, n := range names {
		t, err := readCalibText(filepath.Join(path, n))
		if err != nil {
			return "", nil, err
		}
		parts = append(parts, t)
	}
	return strings.Join(parts, "\n\n"), nil, nil
}

func isJSONL(path string) bool {
	ext := strings.ToLower(filepath.Ext(path))
	return ext == ".jsonl" || ext == ".ndjson"
}

// readJSONL reads JSON Lines calibration rows: all "text" or all
// "input_ids".
func readJSONL(path string) (string, []int, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", nil, err
	}
	var parts []string
	var ids []int
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 1<<20), 1<<30)
	for line := 1; sc.Scan(); line++ {
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var row struct {
			Text *string `json:"text"`
			IDs  []int   `json:"input_ids"`
		}
		if err := json.Unmarshal(b, &row); err != nil {
			return "", nil, fmt.Errorf("%s:%d: not a JSON object with \"text\" or \"input_ids\": %v", path, line, err)
		}
		switch {
		case row.Text != nil && row.IDs == nil && ids == nil:
			parts = append(parts, *row.Text)
		case row.IDs != nil && row.Text == nil && parts == nil:
			ids = append(ids, row.IDs...)
		case row.Text == nil && row.IDs == nil:
			return "", nil, fmt.Errorf("%s:%d: no \"text\" or \"input_ids\" field (JSON Lines calibration data holds one text or one tokenized row per line)", path, line)
		default:
			return "", nil, fmt.Errorf("%s:%d: rows mix \"text\" and \"input_ids\"; use one kind", path, line)
		}
	}
	if err := sc.Err(); err != nil {
		return "", nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(parts) == 0 && len(ids) == 0 {
		return "", nil, fmt.Errorf("%s: no rows", path)
	}
	if ids != nil {
		return "", ids, nil
	}
	return strings.Join(parts, "\n\n"), nil, nil
}
