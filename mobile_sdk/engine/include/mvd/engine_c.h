/* mvd_engine's C API, for JNI and other FFIs. Every call is safe to make with bad input: failures
 * return an error code and leave a one-line message in the handle (or, for mvd_open, in `error`).
 * Buffers returned by the engine are freed with mvd_free. */
#ifndef MVD_ENGINE_C_H_
#define MVD_ENGINE_C_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mvd_engine mvd_engine;

/* 0 on success; otherwise the mvd::ErrorCode value (1 invalid argument, 2 package, 3 checksum,
 * 4 program, 5 missing method, 6 shape, 7 runtime, 8 cancelled, 9 io). */
typedef int mvd_status;
#define MVD_OK 0
#define MVD_CANCELLED 8

/* Called after each denoising step; return 0 to cancel, non-zero to go on. */
typedef int (*mvd_progress_fn)(void* user, int step, int total_steps);

/* Opens a package folder at one of its sizes: frames, height and width of the video (each <= 0: the
 * default size's; mvd_video_info lists them). On failure (a size the package lacks too) returns NULL and,
 * if `error` is non-NULL, sets *error to a message to free with mvd_free. threads <= 0 keeps ExecuTorch's
 * default. */
mvd_engine* mvd_open(const char* package_dir, int verify_checksums, int threads, int frames, int height, int width,
                     char** error);
void mvd_close(mvd_engine* engine);

/* The last error message on this handle ("" if none); valid until the next call on it. */
const char* mvd_last_error(const mvd_engine* engine);

/* JSON {"frames","height","width","fps","steps","model","sizes"} (sizes: [[frames, height, width], ...], the
 * default first); free with mvd_free. */
char* mvd_video_info(mvd_engine* engine);

/* Generates RGB8 frames [frames, height, width, 3] into *rgb (free with mvd_free), *size bytes. */
mvd_status mvd_generate(mvd_engine* engine, const char* prompt, uint64_t seed, mvd_progress_fn progress, void* user,
                        uint8_t** rgb, size_t* size);

/* Asks a running mvd_generate on another thread to stop (it then returns MVD_CANCELLED). */
void mvd_cancel(mvd_engine* engine);

/* JSON of the last generation's times: {"text_encoder_ms","denoise_ms","vae_decoder_ms","total_ms","steps_ms":[...]}. */
char* mvd_last_timings(mvd_engine* engine);

/* Runs warmup + runs generations; *json is the pipeline-benchmark.v1 document (free with mvd_free). */
mvd_status mvd_benchmark(mvd_engine* engine, const char* prompt, uint64_t seed, int warmup, int runs, char** json);

void mvd_free(void* p);

#ifdef __cplusplus
}
#endif

#endif /* MVD_ENGINE_C_H_ */
