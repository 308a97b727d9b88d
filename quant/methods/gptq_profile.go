package methods

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// gptqPhases accumulates where GPTQ spends its time, phase by phase, for the
// scale benchmark (gptq_scale_test.go). Production runs leave gptqProfile
// nil and pay one nil check per phase.
type gptqPhases struct {
	mu    sync.Mutex
	d     map[string]time.Duration
	order []string
}

// gptqProfile, when set, receives the phase times of every GPTQ call.
var gptqProfile *gptqPhases

func newGPTQPhases() *gptqPhases { return &gptqPhases{d: map[string]time.Duration{}} }

// gptqPhase adds the time since start to phase name (no-op when not
// profiling).
func gptqPhase(name string, start time.Time) {
	if p := gptqProfile; p != nil {
		p.add(name, time.Since(start))
	}
}

func (p *gptqPhases) add(name string, d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.d[name]; !ok {
		p.order = append(p.order, name)
	}
	p.d[name] += d
}

func (p *gptqPhases) get(name string) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.d[name]
}

func (p *gptqPhases) String() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var b strings.Builder
	names := slices.Clone(p.order)
	for _, n := range names {
		fmt.Fprintf(&b, "  %-22s %10.2fs\n", n, p.d[n].Seconds())
	}
	return b.String()
}
