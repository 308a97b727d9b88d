package progress

import "testing"

// Rates below one per second do not print as 0.
func TestRate(t *testing.T) {
	cases := map[float64]string{
		850.4: "850 tok/s",
		3.21:  "3.2 tok/s",
		0.4:   "2.5 s/tok",
		0.01:  "100.0 s/tok",
		0:     "– tok/s",
	}
	for v, want := range cases {
		if got := Rate(v, "tok"); got != want {
			t.Errorf("Rate(%v) = %q, want %q", v, got, want)
		}
	}
}
