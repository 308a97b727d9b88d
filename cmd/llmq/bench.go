package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"sort"
	"time"

	"llmq/internal/sysinfo"
	"llmq/model"
)

// benchResult is what one model measures in its own process.
type benchResult struct {
	Model      string  `json:"model"`
	Arch       string  `json:"arch"`
	Bytes      int64   `json:"model_bytes"`
	Resident   int64   `json:"resident_bytes"` // RSS after load − RSS before
	PeakRSS    int64   `json:"peak_rss_bytes"`
	PrefillTPS float64 `json:"prefill_tokens_per_second"`
	DecodeTPS  float64 `json:"decode_tokens_per_second"`
	PromptLen  int     `json:"prompt_len"`
	Gen        int     `json:"gen"`
}

func init() {
	var modelPath, basePath *string
	var promptLen, gen, reps *int
	var one, asJSON *bool
	commands = append(commands, &command{
		name:    "bench",
		summary: "measure speed and memory, quantized vs FP32 side by side",
		usage:   "--model DIR [--base DIR] [--prompt-len 512] [--gen 128]",
		help: `Measures a model: prefill tokens/s (one --prompt-len prompt), decode tokens/s
(--gen tokens one at a time after it, over the KV cache), the weights'
storage, the resident memory the loaded model adds and the peak RSS. With
--base (e.g. the FP32 model a quantized folder came from) both are measured,
each in its own process so memory figures do not mix, and printed side by
side with ratios. Timings are the median of --reps runs.

Example:
  llmq quantize --model ../shared/models/wiki-llama-25m --recipe w8a8 --out /tmp/w8a8
  llmq bench --model /tmp/w8a8 --base ../shared/models/wiki-llama-25m`,
		flags: func(fs *flag.FlagSet) {
			modelPath = fs.String("model", "", "model to measure")
			basePath = fs.String("base", "", "reference model measured beside it (e.g. FP32)")
			promptLen = fs.Int("prompt-len", 512, "prompt tokens for the prefill measurement")
			gen = fs.Int("gen", 128, "tokens generated for the decode measurement")
			reps = fs.Int("reps", 3, "repetitions (the median is reported)")
			one = fs.Bool("one", false, "measure --model in this process and print JSON (used internally)")
			asJSON = fs.Bool("json", false, "print JSON instead of a table")
			atLeast(fs, 1, "prompt-len", "gen", "reps")
		},
		run: func(fs *flag.FlagSet, args []string) error {
			if *modelPath == "" {
				return usagef("--model is required")
			}
			if *one {
				r, err := benchOne(*modelPath, *promptLen, *gen, *reps)
				if err != nil {
					return err
				}
				return json.NewEncoder(os.Stdout).Encode(r)
			}
			var results []benchResult
			for _, p := range []string{*basePath, *modelPath} {
				if p == "" {
					continue
				}
				r, err := benchChild(p, *promptLen, *gen, *reps, fs)
				if err != nil {
					return err
				}
				results = append(results, r)
			}
			if *asJSON {
				return json.NewEncoder(os.Stdout).Encode(results)
			}
			printBench(results)
			return nil
		},
	})
}

// benchChild measures one model in a child process of this binary.
func benchChild(path string, promptLen, gen, reps int, fs *flag.FlagSet) (benchResult, error) {
	var r benchResult
	exe, err := os.Executable()
	if err != nil {
		return r, err
	}
	args := []string{"bench", "--one", "--model", path, "--prompt-len", fmt.Sprint(promptLen), "--gen", fmt.Sprint(gen),
		"--reps", fmt.Sprint(reps), "--threads", fs.Lookup("threads").Value.String()}
	if reference {
		args = append(args, "--reference")
	}
	cmd := exec.Command(exe, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	fmt.Fprintf(os.Stderr, "measuring %s …\n", path)
	if err := cmd.Run(); err != nil {
		return r, fmt.Errorf("measuring %s: %w", path, err)
	}
	return r, json.Unmarshal(out.Bytes(), &r)
}

// benchOne loads and measures a model in this process.
func benchOne(path string, promptLen, gen, reps int) (benchResult, error) {
	settle := func() int64 {
		runtime.GC()
		debug.FreeOSMemory()
		return sysinfo.RSS()
	}
	before := settle()
	m, err := loadModel(path)
	if err != nil {
		return benchResult{}, err
	}
	r := benchResult{Model: path, Arch: m.Arch, Bytes: m.Bytes(), Resident: settle() - before, PromptLen: promptLen, Gen: gen}
	if m.Pos != nil && promptLen+gen > m.MaxPos {
		return r, fmt.Errorf("%s: prompt + generation (%d) exceed the model's %d positions", path, promptLen+gen, m.MaxPos)
	}
	prompt := make([]int, promptLen)
	for i := range prompt {
		prompt[i] = (i*7919 + 13) % m.Vocab
	}
	st := m.NewState(promptLen + gen)
	var pre, dec []float64
	for i := 0; i < reps; i++ {
		st.Reset()
		t0 := time.Now()
		logits, err := m.Forward(st, prompt, model.Options{LastOnly: true})
		if err != nil {
			return r, err
		}
		pre = append(pre, float64(promptLen)/time.Since(t0).Seconds())
		next := argmaxF(logits)
		t1 := time.Now()
		for j := 0; j < gen; j++ {
			if logits, err = m.Forward(st, []int{next}, model.Options{LastOnly: true}); err != nil {
				return r, err
			}
			next = argmaxF(logits)
		}
		dec = append(dec, float64(gen)/time.Since(t1).Seconds())
	}
	r.PrefillTPS, r.DecodeTPS = median(pre), median(dec)
	r.PeakRSS = sysinfo.PeakRSS()
	return r, nil
}

func argmaxF(x []float32) int {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return best
}

func median(x []float64) float64 {
	s := append([]float64(nil), x...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func printBench(rs []benchResult) {
	mib := func(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
	rows := []struct {
		name string
		val  func(benchResult) float64
		fmt  func(benchResult) string
	}{
		{"model bytes", func(r benchResult) float64 { return float64(r.Bytes) }, func(r benchResult) string { return mib(r.Bytes) }},
		{"resident (load)", func(r benchResult) float64 { return float64(r.Resident) }, func(r benchResult) string { return mib(r.Resident) }},
		{"peak RSS", func(r benchResult) float64 { return float64(r.PeakRSS) }, func(r benchResult) string { return mib(r.PeakRSS) }},
		{"prefill tok/s", func(r benchResult) float64 { return r.PrefillTPS }, func(r benchResult) string { return fmt.Sprintf("%.0f", r.PrefillTPS) }},
		{"decode tok/s", func(r benchResult) float64 { return r.DecodeTPS }, func(r benchResult) string { return fmt.Sprintf("%.1f", r.DecodeTPS) }},
	}
	fmt.Printf("%-16s", "")
	for _, r := range rs {
		fmt.Printf(" %24s", short(r.Model))
	}
	if len(rs) == 2 {
		fmt.Printf(" %8s", "ratio")
	}
	fmt.Println()
	for _, row := range rows {
		fmt.Printf("%-16s", row.name)
		for _, r := range rs {
			fmt.Printf(" %24s", row.fmt(r))
		}
		if len(rs) == 2 && row.val(rs[0]) > 0 {
			fmt.Printf(" %7.2f×", row.val(rs[1])/row.val(rs[0]))
		}
		fmt.Println()
	}
	if len(rs) > 0 {
		fmt.Printf("(prompt %d tokens, %d generated; ratio = --model / --base)\n", rs[0].PromptLen, rs[0].Gen)
	}
}

func short(p string) string {
	if len(p) <= 24 {
		return p
	}
	return "…" + p[len(p)-23:]
}
