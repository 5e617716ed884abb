/* `tokwatt export`: writes the synthetic model as a Hugging Face folder (model.safetensors,
 * config.json, tokwatt-export.json) that transformers, vLLM or llama.cpp's converter can load. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tw_cli.h"
#include "tw_cmds.h"
#include "tw_export.h"
#include "tw_util.h"

static const char *tw_export_usage =
    "tokwatt export --model M --out DIR [--seed S] [--dtype bf16|fp32]\n"
    "  --model M    a name from configs/models/ (tiny, llama-3.2-1b, ...) or a config.json path\n"
    "  --out DIR    folder to write model.safetensors, config.json, tokwatt-export.json into\n"
    "  --seed S     weight seed (default 1, as `tokwatt run`): the same seed gives the same\n"
    "               weights as `tokwatt run --seed S`\n"
    "  --dtype D    bf16 (default) or fp32\n"
    "  SIGINT, SIGTERM and SIGHUP stop the export and remove its temporary file (exit 1)";

typedef struct {
    double t0, last;
    int printed;
} tw_export_progress;

static void tw_export_log_progress(void *ctx, uint64_t done, uint64_t total) {
    tw_export_progress *p = ctx;
    double now = tw_now_s();
    /* a line every 5 s on long exports, and a last one if any was printed */
    if (done < total ? now - p->last < 5.0 : !p->printed) return;
    p->last = now;
    p->printed = 1;
    double dt = now - p->t0;
    tw_log("export: %.1f%% (%.2f of %.2f GiB, %.0f MB/s)", 100.0 * (double)done / (double)total,
           (double)done / 1073741824.0, (double)total / 1073741824.0,
           dt > 0 ? (double)done / dt / 1e6 : 0.0);
}

int tw_cmd_export(int argc, char **argv) {
    tw_args a;
    if (tw_args_init(&a, "tokwatt export", tw_export_usage, argc, argv) != TW_OK) {
        tw_cli_fail(NULL);
        return TW_EXIT_FAIL;
    }
    if (tw_args_flag(&a, "--help") || tw_args_flag(&a, "-h")) {
        printf("usage: %s\n", tw_export_usage);
        tw_args_free(&a);
        return TW_EXIT_OK;
    }
    const char *model = NULL, *out = NULL, *dtype_s = NULL;
    long seed = TW_DEFAULT_SEED;
    tw_status st = tw_args_str(&a, "--model", NULL, &model);
    if (st == TW_OK) st = tw_args_str(&a, "--out", NULL, &out);
    if (st == TW_OK) st = tw_args_long(&a, "--seed", TW_DEFAULT_SEED, 0, __LONG_MAX__, &seed);
    if (st == TW_OK) st = tw_args_str(&a, "--dtype", "bf16", &dtype_s);
    if (st == TW_OK) st = tw_args_finish(&a);
    if (st == TW_OK && !model) st = TW_ERR(TW_ERR_INVALID, "option --model is required");
    if (st == TW_OK && (!out || !out[0])) st = TW_ERR(TW_ERR_INVALID, "option --out is required");
    tw_st_dtype dtype = TW_ST_BF16;
    if (st == TW_OK) {
        if (!strcmp(dtype_s, "bf16"))
            dtype = TW_ST_BF16;
        else if (!strcmp(dtype_s, "fp32"))
            dtype = TW_ST_F32;
        else
            st = TW_ERR(TW_ERR_INVALID, "option --dtype: '%s' is not bf16 or fp32", dtype_s);
    }
    if (st != TW_OK) {
        tw_cli_fail(&a);
        tw_args_free(&a);
        return TW_EXIT_USAGE;
    }
    tw_args_free(&a);

    tw_interrupt_install();
    tw_model_config cfg;
    if (tw_model_load(model, &cfg) != TW_OK) {
        tw_cli_fail(NULL);
        return TW_EXIT_FAIL;
    }
    tw_export_progress prog = {tw_now_s(), tw_now_s(), 0};
    tw_export_result res;
    st = tw_export_model(&cfg, (uint64_t)seed, dtype, out, tw_export_log_progress, &prog, &res);
    tw_model_free(&cfg);
    if (st != TW_OK) {
        tw_cli_fail(NULL);
        return TW_EXIT_FAIL;
    }
    double dt = tw_now_s() - prog.t0;
    printf("exported %d tensors, %llu parameters, %llu bytes of %s data (%.3f GiB file) to %s in "
           "%.2f s\n",
           res.n_tensors, (unsigned long long)res.params, (unsigned long long)res.data_bytes,
           dtype == TW_ST_BF16 ? "bf16" : "fp32", (double)res.file_bytes / 1073741824.0, res.path,
           dt);
    printf("also wrote %s/config.json and %s/tokwatt-export.json\n", out, out);
    return TW_EXIT_OK;
}
