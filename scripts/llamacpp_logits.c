// llamacpp_logits: the logits llama.cpp computes for one sequence of token
// ids, for comparing llmq's GGUF export with llama.cpp itself
// (scripts/llamacpp-oracle.sh builds it against libllama).
//
//   llamacpp_logits MODEL.gguf OUT.f32 ID [ID ...]
//
// The ids go in as one batch at positions 0, 1, …, every position's logits
// are kept, and OUT.f32 receives them as n_ids × n_vocab little-endian
// float32. The KV cache is F32 and flash attention off, so that nothing
// but llama.cpp's own arithmetic stands between its result and an FP32
// reference. GGML_BACKEND_DIR names the folder of the ggml CPU backends;
// LLAMACPP_VERBOSE=1 keeps llama.cpp's log.
#include <stdio.h>
#include <stdlib.h>

#include "ggml-backend.h"
#include "llama.h"

static void quiet(enum ggml_log_level level, const char *text, void *data) {
	(void)data;
	if (level == GGML_LOG_LEVEL_ERROR) {
		fputs(text, stderr);
	}
}

int main(int argc, char **argv) {
	if (argc < 4) {
		fprintf(stderr, "usage: %s MODEL.gguf OUT.f32 ID [ID ...]\n", argv[0]);
		return 2;
	}
	if (!getenv("LLAMACPP_VERBOSE")) {
		llama_log_set(quiet, NULL);
	}
	ggml_backend_load_all_from_path(getenv("GGML_BACKEND_DIR"));
	llama_backend_init();

	struct llama_model_params mp = llama_model_default_params();
	mp.n_gpu_layers = 0;
	struct llama_model *model = llama_model_load_from_file(argv[1], mp);
	if (!model) {
		fprintf(stderr, "%s: llama.cpp could not load the model\n", argv[1]);
		return 1;
	}
	const int n = argc - 3;
	struct llama_context_params cp = llama_context_default_params();
	cp.n_ctx = n < 64 ? 64 : n;
	cp.n_batch = cp.n_ctx;
	cp.n_ubatch = cp.n_ctx;
	cp.n_seq_max = 1;
	cp.n_threads = cp.n_threads_batch = 2;
	cp.type_k = GGML_TYPE_F32;
	cp.type_v = GGML_TYPE_F32;
	cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
	cp.swa_full = true;
	struct llama_context *ctx = llama_init_from_model(model, cp);
	if (!ctx) {
		fprintf(stderr, "%s: llama.cpp could not create a context\n", argv[1]);
		return 1;
	}
	const int vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));

	struct llama_batch b = llama_batch_init(n, 0, 1);
	for (int i = 0; i < n; i++) {
		b.token[i] = atoi(argv[3 + i]);
		b.pos[i] = i;
		b.n_seq_id[i] = 1;
		b.seq_id[i][0] = 0;
		b.logits[i] = 1;
	}
	b.n_tokens = n;
	if (llama_decode(ctx, b) != 0) {
		fprintf(stderr, "%s: llama_decode failed\n", argv[1]);
		return 1;
	}
	FILE *out = fopen(argv[2], "wb");
	if (!out) {
		perror(argv[2]);
		return 1;
	}
	for (int i = 0; i < n; i++) {
		const float *l = llama_get_logits_ith(ctx, i);
		if (!l || fwrite(l, sizeof(float), vocab, out) != (size_t)vocab) {
			fprintf(stderr, "%s: no logits for position %d\n", argv[1], i);
			return 1;
		}
	}
	if (fclose(out) != 0) {
		perror(argv[2]);
		return 1;
	}
	llama_batch_free(b);
	llama_free(ctx);
	llama_model_free(model);
	llama_backend_free();
	return 0;
}
