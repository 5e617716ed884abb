/* Baseline for `tokwatt bench allreduce`: OpenMPI's own blocking MPI_Allreduce in a bare loop,
 * same sizes, same timing and bus-bandwidth convention (average over ranks of the per-iteration
 * time, busbw = bytes / time * 2(n-1)/n). Nothing from tokwatt is linked in.
 * usage: mpirun -np N tw_baseline_mpi_allreduce MIN_BYTES MAX_BYTES FACTOR ITERS WARMUP
 * Prints one line per size: "size_bytes time_us busbw_gbps", then "avg_busbw X". */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

static size_t parse_bytes(const char *s) {
    char *end;
    double v = strtod(s, &end);
    if (*end == 'K' || *end == 'k') v *= 1024.0;
    if (*end == 'M' || *end == 'm') v *= 1024.0 * 1024;
    if (*end == 'G' || *end == 'g') v *= 1024.0 * 1024 * 1024;
    return (size_t)v;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, n;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &n);
    if (argc != 6) {
        if (rank == 0)
            fprintf(stderr, "usage: tw_baseline_mpi_allreduce MIN MAX FACTOR ITERS WARMUP\n");
        MPI_Finalize();
        return 2;
    }
    size_t minb = parse_bytes(argv[1]), maxb = parse_bytes(argv[2]);
    int factor = atoi(argv[3]), iters = atoi(argv[4]), warmup = atoi(argv[5]);
    if (factor < 2 || iters < 1 || warmup < 0 || minb < 4 || maxb < minb) {
        if (rank == 0) fprintf(stderr, "tw_baseline_mpi_allreduce: bad arguments\n");
        MPI_Finalize();
        return 2;
    }
    float *in = malloc(maxb), *out = malloc(maxb);
    for (size_t i = 0; i < maxb / 4; i++) in[i] = (float)(i % 17) - 8.0f;
    double sum_bw = 0;
    int nsizes = 0;
    for (size_t b = minb; b <= maxb; b *= (size_t)factor) {
        int count = (int)(b / 4);
        for (int i = 0; i < warmup; i++)
            MPI_Allreduce(in, out, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = MPI_Wtime();
        for (int i = 0; i < iters; i++)
            MPI_Allreduce(in, out, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        double t = (MPI_Wtime() - t0) / iters, tsum = 0;
        MPI_Allreduce(&t, &tsum, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
        t = tsum / n;
        double bytes = (double)count * 4;
        double busbw = bytes / t / 1e9 * (2.0 * (n - 1) / n);
        if (rank == 0) printf("%zu %.2f %.3f\n", (size_t)bytes, t * 1e6, busbw);
        sum_bw += busbw;
        nsizes++;
    }
    if (rank == 0) printf("avg_busbw %.4f\n", nsizes ? sum_bw / nsizes : 0.0);
    free(in);
    free(out);
    MPI_Finalize();
    return 0;
}
