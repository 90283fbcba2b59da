// ggufdump reads a GGUF file with ggml's own reader (gguf_init_from_file
// in the libggml-base that node-llama-cpp bundles, the reader llama.cpp's
// clip.cpp loads an mmproj with) and prints every key with its GGUF type
// and value, and every tensor with its ggml type and shape (F32 tensors
// with their values), one per line. Used by the export tests
// (TestGemma3MMProjInGGML); the declarations are ggml's public API.
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct ggml_context;
struct ggml_tensor_head { int type; void *buffer; int64_t ne[4]; };
struct gguf_context;
struct gguf_init_params { bool no_alloc; struct ggml_context **ctx; };

struct gguf_context *gguf_init_from_file(const char *fname, struct gguf_init_params params);
void gguf_free(struct gguf_context *ctx);
int64_t gguf_get_n_kv(const struct gguf_context *ctx);
const char *gguf_get_key(const struct gguf_context *ctx, int64_t key_id);
int gguf_get_kv_type(const struct gguf_context *ctx, int64_t key_id);
uint32_t gguf_get_val_u32(const struct gguf_context *ctx, int64_t key_id);
float gguf_get_val_f32(const struct gguf_context *ctx, int64_t key_id);
bool gguf_get_val_bool(const struct gguf_context *ctx, int64_t key_id);
const char *gguf_get_val_str(const struct gguf_context *ctx, int64_t key_id);
int gguf_get_arr_type(const struct gguf_context *ctx, int64_t key_id);
size_t gguf_get_arr_n(const struct gguf_context *ctx, int64_t key_id);
const void *gguf_get_arr_data(const struct gguf_context *ctx, int64_t key_id);
struct ggml_tensor_head *ggml_get_first_tensor(const struct ggml_context *ctx);
struct ggml_tensor_head *ggml_get_next_tensor(const struct ggml_context *ctx, struct ggml_tensor_head *t);
const char *ggml_get_name(const struct ggml_tensor_head *t);
void *ggml_get_data(const struct ggml_tensor_head *t);
void ggml_free(struct ggml_context *ctx);

enum { T_UINT32 = 4, T_FLOAT32 = 6, T_BOOL = 7, T_STRING = 8, T_ARRAY = 9 };

int main(int argc, char **argv) {
	if (argc != 2) {
		fprintf(stderr, "usage: ggufdump FILE.gguf\n");
		return 2;
	}
	struct ggml_context *meta = NULL;
	struct gguf_init_params params = {false, &meta};
	struct gguf_context *ctx = gguf_init_from_file(argv[1], params);
	if (!ctx) {
		fprintf(stderr, "gguf_init_from_file failed on %s\n", argv[1]);
		return 1;
	}
	for (int64_t i = 0; i < gguf_get_n_kv(ctx); i++) {
		int t = gguf_get_kv_type(ctx, i);
		printf("kv %s %d", gguf_get_key(ctx, i), t);
		switch (t) {
		case T_UINT32: printf(" %u", gguf_get_val_u32(ctx, i)); break;
		case T_FLOAT32: printf(" %.9g", gguf_get_val_f32(ctx, i)); break;
		case T_BOOL: printf(" %d", gguf_get_val_bool(ctx, i) ? 1 : 0); break;
		case T_STRING: printf(" %s", gguf_get_val_str(ctx, i)); break;
		case T_ARRAY:
			printf(" %d %zu", gguf_get_arr_type(ctx, i), gguf_get_arr_n(ctx, i));
			if (gguf_get_arr_type(ctx, i) == T_FLOAT32) {
				const float *v = gguf_get_arr_data(ctx, i);
				for (size_t j = 0; j < gguf_get_arr_n(ctx, i); j++) printf(" %.9g", v[j]);
			}
			break;
		}
		printf("\n");
	}
	for (struct ggml_tensor_head *t = ggml_get_first_tensor(meta); t; t = ggml_get_next_tensor(meta, t)) {
		printf("tensor %s %d %lld %lld %lld %lld", ggml_get_name(t), t->type,
		       (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3]);
		if (t->type == 0) { // GGML_TYPE_F32
			const float *v = ggml_get_data(t);
			int64_t n = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
			for (int64_t j = 0; j < n; j++) printf(" %.9g", v[j]);
		}
		printf("\n");
	}
	ggml_free(meta);
	gguf_free(ctx);
	return 0;
}
