package main

import (
	"flag"
	"fmt"
	"math"
	"strconv"
)

// Numeric flags are checked after parsing against the rules their command
// declares (atLeast, atMost, …), so a bad value is refused in one line
// before anything is loaded. Only flags given on the command line are
// checked: the defaults are valid by construction.

type flagRule struct {
	ok   func(v float64) bool
	want string
}

var flagRules = map[*flag.FlagSet]map[string][]flagRule{}

func addRule(fs *flag.FlagSet, r flagRule, names ...string) {
	if flagRules[fs] == nil {
		flagRules[fs] = map[string][]flagRule{}
	}
	for _, n := range names {
		if fs.Lookup(n) == nil {
			panic("rule for undefined flag " + n)
		}
		flagRules[fs][n] = append(flagRules[fs][n], r)
	}
}

func num(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

// atLeast: the flags' values are ≥ min.
func atLeast(fs *flag.FlagSet, min float64, names ...string) {
	addRule(fs, flagRule{func(v float64) bool { return v >= min }, "must be at least " + num(min)}, names...)
}

// atMost: the flags' values are ≤ max.
func atMost(fs *flag.FlagSet, max float64, names ...string) {
	addRule(fs, flagRule{func(v float64) bool { return v <= max }, "must be at most " + num(max)}, names...)
}

// positive: the flags' values are > 0 (and finite).
func positive(fs *flag.FlagSet, names ...string) {
	addRule(fs, flagRule{func(v float64) bool { return v > 0 && !math.IsInf(v, 0) }, "must be a positive number"}, names...)
}

// nonNegative: the flags' values are ≥ 0 (and finite).
func nonNegative(fs *flag.FlagSet, names ...string) {
	addRule(fs, flagRule{func(v float64) bool { return v >= 0 && !math.IsInf(v, 0) }, "must be a number ≥ 0"}, names...)
}

// numericValue returns a numeric flag's value.
func numericValue(f *flag.Flag) (float64, bool) {
	g, ok := f.Value.(flag.Getter)
	if !ok {
		return 0, false
	}
	switch v := g.Get().(type) {
	case int:
		return float64(v), true
	case int64:
		return float64(v), true
	case uint:
		return float64(v), true
	case uint64:
		return float64(v), true
	case float64:
		return v, true
	}
	return 0, false
}

// checkFlags applies the rules to the flags given on the command line.
func checkFlags(fs *flag.FlagSet) error {
	var err error
	fs.Visit(func(f *flag.Flag) {
		if err != nil {
			return
		}
		v, isNum := numericValue(f)
		if isNum && math.IsNaN(v) {
			err = fmt.Errorf("%s %s: not a number", flagName(f.Name), f.Value)
			return
		}
		for _, r := range flagRules[fs][f.Name] {
			if !r.ok(v) {
				err = fmt.Errorf("%s %s: %s", flagName(f.Name), f.Value, r.want)
				return
			}
		}
	})
	return err
}

// flagName spells a flag as its help does: -n, --seqlen.
func flagName(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}
