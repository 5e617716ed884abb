# Tensor parallelism without MPI (issue 14): `tokwatt run --comm threads` runs the ranks as
# threads of one process over the same run library (harness/run) as MPI ranks, so the multi-rank
# engine, its sub-communicators and its failure handling are tested here with no launcher. The
# communicator itself (every collective against float64, sub-communicators, failures) is the
# Criterion suite tests/test_comm_threads.c. Every command runs under `timeout` so that a hang
# fails the test instead of blocking ctest.
if(NOT TW_TESTS)
  return()
endif()
set(_thr_to timeout -s KILL 60)
set(_thr_run run --threads 1 --membw-gbps 10 --peak-gflops 10 --warmup 0 --batch 3 --prompt 9
    --gen 6 --reps 2 --power none)
string(REPLACE ";" " " _thr_run_s "${_thr_run}")

# tokens identical to one rank (run by the CHECK as the reference), a valid result file with the
# threads communicator and one figure per rank: --tp 2 and 4 on tiny (8 heads on 2 KV heads),
# --tp 3 on tiny-tp3 (6 heads on 3 KV heads; a vocabulary of 509 split unevenly), fp32 and bf16
foreach(cfg "tiny;2;fp32" "tiny;4;bf16" "tiny-tp3;3;fp32" "tiny-tp3;3;bf16")
  list(GET cfg 0 model)
  list(GET cfg 1 tp)
  list(GET cfg 2 dt)
  set(res ${TW_TR}/threads_${model}_tp${tp}_${dt}.json)
  set(ref ${TW_TR}/threads_${model}_tp${tp}_${dt}_one_rank.json)
  tw_cmd_test(threads_run_${model}_tp${tp}_${dt} TIMEOUT 90 RM ${res}
    COMMAND ${_thr_to} ${TW} ${_thr_run} --model ${model} --dtype ${dt} --tp ${tp} --comm threads
    --out ${res}
    ERR "tensor parallel over ${tp} ranks, communicator threads \\(rank threads of this process\\)"
    OUT "tensor parallel: ${tp} ranks over threads, collectives [0-9.]+% of measured time"
    CHECK "${TW_CJ} ${res} \"r['complete'] is True\" \"r['comm']['kind'] == 'threads' and r['comm']['ranks'] == ${tp}\" \"r['scenario']['tp'] == ${tp} and len(r['ranks']) == ${tp}\" \"r['metrics']['collective_share'] > 0\" \"len(set(t for row in r['generated_tokens'] for t in row)) > 3\""
    CHECK "rm -f ${ref} && ${TWQ} ${_thr_run_s} --model ${model} --dtype ${dt} --out ${ref} >/dev/null 2>&1 && ${TW_PYTHON3} ${TW_CMD_DIR}/check_same.py ${res} ${ref} prompt_tokens generated_tokens"
    CHECK "${TW_PYTHON3} ${TW_CMD_DIR}/check_schema.py ${res} ${ref}")
endforeach()

# a --tp sweep in one process: each degree on a sub-communicator of ranks 0..N-1 while the others
# wait (the same checker as the MPI sweeps: rows, order, per-rank figures, identical tokens)
set(res ${TW_TR}/threads_tp_sweep.json)
tw_cmd_test(threads_run_tp_sweep_2_1_4 TIMEOUT 120 RM ${res}
  COMMAND ${_thr_to} ${TW} run --model tiny --tp 2,1,4 --comm threads --dtype fp32,bf16 --batch 3
  --prompt 9 --gen 5 --reps 1 --warmup 0 --threads 1 --format json --out ${res}
  CHECK "${TW_PYTHON3} ${CMAKE_SOURCE_DIR}/tests/mpi/check_tp_sweep.py ${res} 2,1,4 4 2")

# expert parallelism over rank threads: the tiny Mixtral's 4 experts over 2 ranks, tokens and
# expert load identical to one rank
set(res ${TW_TR}/threads_ep2.json)
set(ref ${TW_TR}/threads_ep2_one_rank.json)
tw_cmd_test(threads_run_ep2 TIMEOUT 90 RM ${res}
  COMMAND ${_thr_to} ${TW} ${_thr_run} --model tiny-mixtral --ep 2 --comm threads --out ${res}
  OUT "expert parallel over 2 ranks: all-to-all [0-9.]+% of the measured time"
  CHECK "rm -f ${ref} && ${TWQ} ${_thr_run_s} --model tiny-mixtral --out ${ref} >/dev/null 2>&1 && ${TW_PYTHON3} ${TW_CMD_DIR}/check_same.py ${res} ${ref} prompt_tokens generated_tokens experts.load"
  CHECK "${TW_PYTHON3} ${TW_CMD_DIR}/check_schema.py ${res}")

# a rank thread that fails (the test hook TW_RUN_FAIL_RANK=R: rank R fails once its engine is
# built, while rank 0 measures) ends the run at once with exit 1, naming the rank; no result
foreach(rank 1 2)
  tw_cmd_test(threads_run_rank${rank}_failure_is_named EXIT 1 TIMEOUT 60
    ENV TW_RUN_FAIL_RANK=${rank}
    COMMAND sh -c "rm -rf ${TW_TR}/threads_fail${rank} && exec timeout -s KILL 30 ${TWQ} ${_thr_run_s} --model tiny --tp 4 --comm threads --out ${TW_TR}/threads_fail${rank}/"
    ERR "rank ${rank} failed: rank ${rank}: injected failure \\(TW_RUN_FAIL_RANK=${rank}"
    CHECK "test ! -e ${TW_TR}/threads_fail${rank} || test -z \"$(ls -A ${TW_TR}/threads_fail${rank})\"")
endforeach()

# SIGTERM and SIGINT while the rank threads measure: rank 0 writes the incomplete result
foreach(sig TERM INT HUP)
  tw_cmd_test(threads_run_signal_${sig} OUT "tw-test: PASS" TIMEOUT 90
    COMMAND sh ${TW_CMD_DIR}/interrupt.sh ${TW} ${TW_TR}/threads_signal_${sig} threads ${sig})
endforeach()

# what --comm threads refuses: under a launcher, on the cuda backend
tw_cmd_test(threads_run_under_launcher_refused EXIT 2 ENV OMPI_COMM_WORLD_SIZE=2
  ERR "--comm threads runs every rank as a thread of this one process: launch it without mpirun"
  NO_ERR "engine ready" COMMAND ${TW} run --model tiny --tp 2 --comm threads --out ${TW_TR}/x/)
tw_cmd_test(threads_run_cuda_refused EXIT 2
  ERR "--comm threads is the CPU backend's shared-memory communicator"
  COMMAND ${TW} run --model tiny --tp 2 --comm threads --backend cuda --out ${TW_TR}/x/)
# the multi-rank hint without a launcher names --comm threads
tw_cmd_test(run_tp_without_launcher_names_threads EXIT 2
  ERR "launch with mpirun -np 2 tokwatt run --tp 2 \\(or, on one host, tokwatt run --tp 2 --comm threads\\)"
  COMMAND ${TW} run --model tiny --tp 2 --out ${TW_TR}/x/)

# one process, a thread per GPU (NCCL without MPI): with no GPU here, a clear refusal naming what
# is missing, before any thread starts (CUDA not built or no device both read "no CUDA device")
tw_cmd_test(cuda_tp2_without_gpu_refused EXIT 1
  ERR "no CUDA device: --backend cuda --tp 2 runs one thread per GPU of this host over one NCCL communicator"
  NO_ERR "engine ready"
  COMMAND ${_thr_to} ${TW} run --model tiny --backend cuda --tp 2 --reps 1 --out ${TW_TR}/x/)
tw_cmd_test(cuda_comm_nccl_one_rank_without_gpu_refused EXIT 1 ERR "no CUDA device"
  COMMAND ${_thr_to} ${TW} run --model tiny --backend cuda --comm nccl --reps 1 --out ${TW_TR}/x/)
tw_cmd_test(bench_gpus_without_gpu_refused EXIT 1
  ERR "no CUDA device: --gpus 2 runs one thread per GPU"
  COMMAND ${_thr_to} ${TW} bench allreduce --gpus 2 -b 8)

# the collective benchmarks over rank threads, checked results (#wrong 0), nccl-tests table
tw_cmd_test(threads_bench_allreduce_ranks3 OUT "comm threads, 3 rank\\(s\\) on 1 host"
  OUT "# Out of bounds values : 0 OK" OUT "# Avg bus bandwidth"
  COMMAND ${_thr_to} ${TW} bench allreduce --comm threads --ranks 3 -b 8 -e 1M -f 16 -n 3 -w 1)
foreach(c allgather reducescatter broadcast alltoall)
  tw_cmd_test(threads_bench_${c}_ranks4 OUT "# Out of bounds values : 0 OK"
    COMMAND ${_thr_to} ${TW} bench ${c} --ranks 4 -b 1K -e 64K -f 8 -n 3 -w 1 -d bf16 -o max -r 3)
endforeach()
tw_cmd_test(threads_bench_json_ranks2 JSON_OUT
  COMMAND ${_thr_to} ${TW} bench reducescatter --ranks 2 -b 4K -e 16K -n 2 -w 1 --format json
  CHECK "${TW_CJ} $TW_OUT \"r['comm'] == 'threads' and r['ranks'] == 2\" \"all(x['out_of_place']['wrong'] == 0 and x['in_place']['wrong'] == 0 for x in r['rows'])\" \"len(r['rows'][0]['rank_time_us']) == 2\"")
tw_cmd_test(threads_bench_ranks_with_mpi_refused EXIT 2 ERR "--ranks N runs rank threads"
  COMMAND ${TW} bench allreduce --ranks 2 --comm mpi)

# a launch mixing MPI processes and threads (nccl-tests -np P -g G): the host communicator that
# bootstraps NCCL over P x G ranks, numbered mpi rank x G + thread (CPU, no GPU needed)
if(MPI_C_FOUND)
  tw_cmd_test(mpi_hybrid_np2 NP 2 TIMEOUT 60 OUT "tw-test: PASS process 0 of 2"
    OUT "tw-test: PASS process 1 of 2: 3 threads, global ranks 3..5" NO_OUT "tw-test: FAIL"
    COMMAND $<TARGET_FILE:mpi_hybrid>)
endif()
