// Package inspect looks inside a model before (and after) quantizing it and
// writes what it finds as one self-contained HTML report.
//
// The report answers the questions a quantization recipe raises:
//
//   - Which input channels of each linear carry outliers? LLM.int8()
//     (Dettmers et al. 2022, §3) and SmoothQuant (Xiao et al. 2023, §3 and
//     Fig. 4) show that the activations of large LLMs have a few hidden
//     channels whose magnitudes are 10–100× the rest, in the same channels
//     for every token and layer, while weights are flat. A per-tensor or
//     per-token activation scale is then set by those few channels. The
//     report draws each linear input's per-channel max |x| over the
//     calibration tokens, the per-input-channel max |W| of the linears that
//     read it, and ranks channels by their ratio to the median channel.
//   - What does the recipe's smoothing do to those ranges? When the recipe
//     rescales channels (SmoothQuant, AWQ), the same pictures are drawn for
//     the rescaled model: activations flatter, weights less flat.
//   - How much error does each quantized linear add? The relative MSE
//     ‖Y_q − Y‖² / ‖Y‖² of its outputs on the calibration inputs.
//   - Which blocks (or linears) hurt the model most? Each is quantized alone,
//     the rest kept in full precision, and the KL divergence from the full-
//     precision next-token distributions and the perplexity change are
//     measured on a few evaluation windows (as llama.cpp's --kl-divergence
//     measures a whole model).
//
// Analyze computes a Report (plain data, usable from tests); Report.WriteHTML
// renders it with inline SVG charts, so the file opens offline with nothing
// beside it.
package inspect
