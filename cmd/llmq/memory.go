package main

import (
	"fmt"
	"os"

	"llmq/internal/sysinfo"
	"llmq/quant/methods"
)

// checkMemory prints a run's memory estimate and refuses the run when it
// exceeds the memory available (LLMQ_NO_MEMORY_CHECK=1 runs it anyway, for
// machines whose swap or overcommit the estimate does not see).
func checkMemory(e methods.MemoryEstimate) error {
	avail := sysinfo.Available()
	if avail == 0 {
		fmt.Fprintf(os.Stderr, "memory estimate: %s\n", e)
		return nil
	}
	fmt.Fprintf(os.Stderr, "memory estimate: %s; %s available\n", e, methods.Bytes(avail))
	if e.Total() > avail && os.Getenv("LLMQ_NO_MEMORY_CHECK") != "1" {
		return fmt.Errorf("this run needs about %s and %s is available: use fewer or shorter calibration sequences (--calib-samples, --calib-seqlen), or set LLMQ_NO_MEMORY_CHECK=1 to run anyway", methods.Bytes(e.Total()), methods.Bytes(avail))
	}
	return nil
}
