/*
 * spawn.c — runs a command and writes its wall time and peak RSS to a file (bench/run's timer).
 *
 * A process started by fork() from a big one (bench/run is Python, ~30 MiB) inherits its
 * parent's high-water RSS: Linux carries it over exec, so wait4's ru_maxrss of every command
 * bench/run starts would read at least the harness's size. This small program is exec'd in
 * between: its own high-water is ~1 MiB, and the command it forks reports its own peak (for a
 * shell pipeline, the largest process's, as wait4 merges the children a process waited for).
 *
 * usage: bench_spawn RESULT_FILE CMD [ARG...]
 *   writes "SECONDS PEAK_RSS_KIB CPU_SECONDS\n" (CPU: user + system of CMD and the children it
 *   waited for); exits as CMD did
 */
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: bench_spawn RESULT_FILE CMD [ARG...]\n");
    return 2;
  }
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  pid_t pid = fork();
  if (pid < 0) {
    perror("fork");
    return 127;
  }
  if (pid == 0) {
    execvp(argv[2], argv + 2);
    perror(argv[2]);
    _exit(127);
  }
  int status;
  struct rusage ru;
  if (wait4(pid, &status, 0, &ru) < 0) {
    perror("wait4");
    return 127;
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  FILE *f = fopen(argv[1], "w");
  double cpu = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
  if (!f ||
      fprintf(f, "%.6f %ld %.3f\n", (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9, ru.ru_maxrss, cpu) < 0 ||
      fclose(f) != 0) {
    perror(argv[1]);
    return 127;
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}
