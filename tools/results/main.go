// Command results regenerates docs/results.md: the accuracy table of every
// quantization method on the shared Llama models. Each row runs the llmq
// binary as its own process (so wall time and peak RSS are per method):
//
//	llmq quantize --model M --recipe R --out TMP --json     time, peak RSS
//	llmq eval --model TMP --data wiki.test.tokens --json     WikiText-2 ppl
//	llmq eval --model TMP --data git-docs.txt --json         in-domain ppl
//	llmq eval --model TMP --base M --limit K --json          KL, top-1
//
// Usage (from the repository root):
//
//	go run ./tools/results                 # the full table (hours on 2 cores)
//	go run ./tools/results -limit 40       # first 40 windows of each text (quick)
//	go run ./tools/results -rows rtn-w4a16,gptq-w4a16
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// row is one line of the table: a built-in recipe and the quality bar the
// issue sets for it (0: none), as the maximum allowed Δppl % on WikiText-2.
type row struct {
	recipe  string
	label   string
	maxDPct float64
	minDPct float64 // lower bar (RTN W4 sanity range)
}

var rowsBase = []row{
	{"", "FP32", 0, 0},
	{"w8a8-tensor-static", "W8A8 RTN, per-tensor W, static per-tensor A", 0, 0},
	{"w8a8", "W8A8 per-channel W, per-token dynamic A", 0.3, 0},
	{"llm-int8", "LLM.int8() (threshold 6)", 0, 0},
	{"smoothquant-o1", "SmoothQuant O1 α=0.5 (per-token dyn. A)", 0, 0},
	{"smoothquant-o1-lmhead", "SmoothQuant O1 + int8 lm_head/embedding (whole model int8)", 0, 0},
	{"smoothquant-o2", "SmoothQuant O2 α=0.5 (per-tensor dyn. A)", 0.8, 0},
	{"smoothquant-o3", "SmoothQuant O3 α=0.5 (per-tensor static A)", 0, 0},
	{"smoothquant-o1-search", "SmoothQuant O1, α searched", 0, 0},
	{"smoothquant-o2-search", "SmoothQuant O2, α searched", 0, 0},
	{"smoothquant-o3-search", "SmoothQuant O3, α searched", 0, 0},
	{"zeroquant-w8a8", "ZeroQuant W8A8 (g128 W, per-token A)", 0, 0},
	{"zeroquant-w4a8-mix", "ZeroQuant W4/8-mix (attn W8, MLP W4, A8)", 0, 0},
	{"rtn-w4a16", "W4A16 g128 RTN", 9, 3},
	{"gptq-w4a16", "W4A16 g128 GPTQ", 1.5, 0},
	{"gptq-w4a16-actorder", "W4A16 g128 GPTQ + act-order", 1.0, 0},
	{"gptq-w4a16-lmhead", "W4A16 g128 GPTQ + int4 lm_head/embedding (RTN)", 0, 0},
	{"awq-w4a16", "W4A16 g128 AWQ (asym)", 0, 0},
	{"rtn-w3a16", "W3A16 g128 RTN", 0, 0},
	{"gptq-w3a16", "W3A16 g128 GPTQ", 0, 0},
	{"gptq-w3a16-actorder", "W3A16 g128 GPTQ + act-order", 7, 0},
	{"gptq-w3a16-lorc", "W3A16 g128 GPTQ + LoRC rank 8", 0, 0},
	{"w4a8-int", "W4A8 INT (int4 g128 W, int8 per-token A)", 0, 0},
	{"w4a8-fp", "W4A8 FP (FP4 g128 W, FP8 per-token A)", 0, 0},
	{"w4a8-fp-m1", "W4A8 FP, pow2 scales M1", 0, 0},
	{"w4a8-fp-m2", "W4A8 FP, pow2-ratio scales M2", 0, 0},
	{"w4a8-fp-lorc", "W4A8 FP M2 + LoRC rank 8", 0, 0},
	{"lkd-w4a8", "W4A8 INT + LKD", 0, 0},
	{"kv-int8", "KV cache int8 (per-token, per-head)", 0, 0},
}

var rowsOutliers = []row{
	{"", "FP32", 0, 0},
	{"w8a8-tensor-static", "W8A8 RTN, per-tensor W, static per-tensor A", 0, 0},
	{"w8a8", "W8A8 per-channel W, per-token dynamic A", 0, 0},
	{"llm-int8", "LLM.int8() (threshold 6)", 0.5, 0},
	{"smoothquant-o1", "SmoothQuant O1 α=0.5", 1.5, 0},
	{"smoothquant-o2", "SmoothQuant O2 α=0.5", 3, 0},
	{"smoothquant-o3", "SmoothQuant O3 α=0.5", 0, 0},
	{"smoothquant-o2-search", "SmoothQuant O2, α searched", 0, 0},
	{"zeroquant-w8a8", "ZeroQuant W8A8", 0, 0},
	{"rtn-w4a16", "W4A16 g128 RTN", 0, 0},
	{"gptq-w4a16", "W4A16 g128 GPTQ", 2, 0},
	{"gptq-w4a16-actorder", "W4A16 g128 GPTQ + act-order", 0, 0},
	{"awq-w4a16", "W4A16 g128 AWQ (asym)", 0, 0},
}

type result struct {
	Model, Recipe, Label string
	PPLWiki, PPLGit      float64
	DWiki, DGit          float64
	KL, Top1             float64
	QuantSeconds         float64
	PeakRSS              float64 // MiB, of the quantize process (FP32: of the eval)
	Bar                  string
	Err                  string
}

func main() {
	shared := flag.String("shared", "../shared", "folder with the reference models and data")
	limit := flag.Int("limit", 0, "evaluate only the first N windows of each text (0: all)")
	klWindows := flag.Int("kl-windows", 40, "windows of WikiText-2 used for KL divergence and top-1")
	samples := flag.Int("calib-samples", 128, "calibration sequences")
	only := flag.String("rows", "", "comma-separated recipes to run (default: all); with -resume, these are re-measured and the other kept rows stay")
	out := flag.String("out", "docs/results.md", "markdown output")
	resume := flag.Bool("resume", false, "keep the rows already in the JSON beside --out (same settings) and measure only the missing ones")
	flag.Parse()
	cfg := settings{Limit: *limit, KLWindows: *klWindows, Samples: *samples}
	done := map[string]result{}
	if *resume {
		prev, err := readResults(jsonPath(*out))
		check(err)
		if prev.Settings != cfg {
			check(fmt.Errorf("%s was made with %+v, not %+v: run without -resume", jsonPath(*out), prev.Settings, cfg))
		}
		for _, r := range prev.Rows {
			if r.Err == "" {
				done[r.Model+"/"+r.Recipe] = r
			}
		}
	}

	work, err := os.MkdirTemp("", "llmq-results")
	check(err)
	defer os.RemoveAll(work)
	bin := filepath.Join(work, "llmq")
	run("go", "build", "-o", bin, "./cmd/llmq")

	wiki := filepath.Join(*shared, "data/wikitext-2/wiki.test.tokens")
	git := filepath.Join(*shared, "data/git-docs/git-docs.txt")
	want := map[string]bool{}
	for _, r := range strings.Split(*only, ",") {
		if r != "" {
			want[r] = true
		}
	}
	var results []result
	for _, set := range []struct {
		model string
		rows  []row
	}{{"wiki-llama-25m", rowsBase}, {"wiki-llama-25m-outliers", rowsOutliers}} {
		mdir := filepath.Join(*shared, "models", set.model)
		var fp result
		for _, r := range set.rows {
			if res, ok := done[set.model+"/"+r.recipe]; ok && (r.recipe == "" || !want[r.recipe]) {
				if r.recipe == "" {
					fp = res
				}
				results = append(results, res) // kept from the earlier run
				continue
			}
			if len(want) > 0 && r.recipe != "" && !want[r.recipe] {
				continue
			}
			res := result{Model: set.model, Recipe: r.recipe, Label: r.label}
			target := mdir
			if r.recipe != "" {
				target = filepath.Join(work, set.model+"-"+r.recipe)
				var q map[string]any
				if err := runJSON(&q, bin, "quantize", "--model", mdir, "--recipe", r.recipe, "--out", target,
					"--calib-samples", fmt.Sprint(*samples), "--json"); err != nil {
					res.Err = err.Error()
					results = append(results, res)
					fmt.Fprintf(os.Stderr, "%s %s: %v\n", set.model, r.recipe, err)
					continue
				}
				res.QuantSeconds = q["quantize_seconds"].(float64)
				res.PeakRSS = q["peak_rss_bytes"].(float64) / (1 << 20)
			}
			for _, d := range []struct {
				file string
				ppl  *float64
			}{{wiki, &res.PPLWiki}, {git, &res.PPLGit}} {
				var e map[string]any
				args := []string{"eval", "--model", target, "--data", d.file, "--json"}
				if *limit > 0 {
					args = append(args, "--limit", fmt.Sprint(*limit))
				}
				if err := runJSON(&e, bin, args...); err != nil {
					res.Err = err.Error()
					break
				}
				*d.ppl = e["ppl"].(float64)
				if r.recipe == "" && d.file == wiki {
					res.PeakRSS = e["peak_rss_bytes"].(float64) / (1 << 20)
				}
			}
			if r.recipe == "" {
				fp = res
			} else if res.Err == "" {
				var c map[string]any
				if err := runJSON(&c, bin, "eval", "--model", target, "--base", mdir, "--limit", fmt.Sprint(*klWindows), "--json"); err != nil {
					res.Err = err.Error()
				} else {
					res.KL, res.Top1 = c["kl"].(float64), c["top1"].(float64)
				}
				os.RemoveAll(target)
			}
			if fp.PPLWiki > 0 && res.Err == "" {
				res.DWiki = 100 * (res.PPLWiki - fp.PPLWiki) / fp.PPLWiki
				res.DGit = 100 * (res.PPLGit - fp.PPLGit) / fp.PPLGit
				res.Bar = bar(r, res.DWiki)
			}
			fmt.Fprintf(os.Stderr, "%s %-24s wiki %.3f (%+.2f%%) git %.3f (%+.2f%%) KL %.5f top1 %.4f %s\n",
				set.model, r.recipe, res.PPLWiki, res.DWiki, res.PPLGit, res.DGit, res.KL, res.Top1, res.Bar)
			results = append(results, res)
			write(*out, results, cfg) // after every row: a partial table survives an interruption
		}
	}
	write(*out, results, cfg)
}

// settings are the measurement settings a table was made with.
type settings struct {
	Limit, KLWindows, Samples int
}

// resultsFile is the JSON written beside the table.
type resultsFile struct {
	Settings settings
	Rows     []result
}

func jsonPath(md string) string { return strings.TrimSuffix(md, filepath.Ext(md)) + ".json" }

func readResults(path string) (resultsFile, error) {
	var f resultsFile
	raw, err := os.ReadFile(path)
	if err != nil {
		return f, err
	}
	if err := json.Unmarshal(raw, &f); err != nil {
		return f, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

func bar(r row, d float64) string {
	switch {
	case r.maxDPct == 0:
		return ""
	case d <= r.maxDPct && (r.minDPct == 0 || d >= r.minDPct):
		return fmt.Sprintf("pass (%s)", span(r))
	}
	return fmt.Sprintf("**FAIL** (%s)", span(r))
}

func span(r row) string {
	if r.minDPct != 0 {
		return fmt.Sprintf("%+g…%+g %%", r.minDPct, r.maxDPct)
	}
	return fmt.Sprintf("≤ %+g %%", r.maxDPct)
}

func write(path string, results []result, cfg settings) {
	limit, klWindows, samples := cfg.Limit, cfg.KLWindows, cfg.Samples
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Quantization results\n\nGenerated by `go run ./tools/results")
	if limit > 0 {
		fmt.Fprintf(&b, " -limit %d", limit)
	}
	fmt.Fprintf(&b, " -kl-windows %d -calib-samples %d [-resume]", klWindows, samples)
	fmt.Fprintf(&b, "` (last run on %s, %s, %d CPUs, %s; with -resume, rows kept from earlier runs were measured there). Do not edit by hand.\n\n", time.Now().UTC().Format("2006-01-02"), runtime.GOARCH, runtime.NumCPU(), runtime.Version())
	scope := "the full files"
	if limit > 0 {
		scope = fmt.Sprintf("the first %d windows of each file", limit)
	}
	fmt.Fprintf(&b, "Perplexity at seqlen 512 over %s (WikiText-2 test; `git-docs.txt`, in-domain). "+
		"Calibration: %d × 512 tokens from WikiText-2 *validation*, seed 0. KL = mean KL(P_fp32 ‖ P_quant) per token "+
		"and top-1 = agreement of the most likely token, over the first %d WikiText-2 windows. Time and peak RSS are "+
		"those of the `llmq quantize` process (model load, calibration, quantization and save). Bars are the issue's "+
		"limits on Δppl (WikiText-2).\n", scope, samples, klWindows)
	model := ""
	for _, r := range results {
		if r.Model != model {
			model = r.Model
			fmt.Fprintf(&b, "\n## %s\n\n| method | recipe | ppl WikiText-2 | Δ%% | ppl git-docs | Δ%% | KL | top-1 | quantize time | peak RSS | bar |\n|---|---|---|---|---|---|---|---|---|---|---|\n", model)
		}
		if r.Err != "" {
			fmt.Fprintf(&b, "| %s | `%s` | error: %s |||||||||\n", r.Label, r.Recipe, strings.ReplaceAll(r.Err, "|", "/"))
			continue
		}
		if r.Recipe == "" {
			fmt.Fprintf(&b, "| %s | – | %.3f | – | %.3f | – | – | – | – | %.0f MiB | |\n", r.Label, r.PPLWiki, r.PPLGit, r.PeakRSS)
			continue
		}
		fmt.Fprintf(&b, "| %s | `%s` | %.3f | %+.2f | %.3f | %+.2f | %.5f | %.2f%% | %.1f s | %.0f MiB | %s |\n",
			r.Label, r.Recipe, r.PPLWiki, r.DWiki, r.PPLGit, r.DGit, r.KL, 100*r.Top1, r.QuantSeconds, r.PeakRSS, r.Bar)
	}
	check(os.WriteFile(path, b.Bytes(), 0o644))
	raw, _ := json.MarshalIndent(resultsFile{Settings: cfg, Rows: results}, "", "  ")
	check(os.WriteFile(jsonPath(path), append(raw, '\n'), 0o644))
}

func run(name string, args ...string) {
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	check(cmd.Run())
}

// runJSON runs the binary and decodes its JSON stdout; stderr is kept for errors.
func runJSON(v any, bin string, args ...string) error {
	cmd := exec.Command(bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
		return fmt.Errorf("%s: %s", strings.Join(args[:1], " "), lines[len(lines)-1])
	}
	return json.Unmarshal(stdout.Bytes(), v)
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "results:", err)
		os.Exit(1)
	}
}
