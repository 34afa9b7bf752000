// Command testjob is a job for jobfleet's tests: a real process that
// allocates memory, counts progress into its checkpoint directory, fails, or
// sleeps, as its arguments say. It reads the JOBFLEET_* environment the
// worker gives every job.
//
//	testjob alloc <MiB> [hold-ms]          allocate and touch memory, then exit 0
//	testjob alloc-params [hold-ms]         the same, with the MiB from the job's params ({"mib": N})
//	testjob write <dir> <file-MiB> <MiB> [hold-ms]
//	                                       write a file of file-MiB in dir, then allocate as alloc does,
//	                                       then remove the file
//	testjob count <target> <step-ms> <log> count to target, one step per step-ms, resuming from the checkpoint;
//	                                       a log that is a directory holds one <job id>.log per job;
//	                                       the count is its output "count"
//	testjob fail <code>                    exit with code
//	testjob sleep <ms>                     sleep, then exit 0
//	testjob wait <file>                    wait until the file exists, then exit 0
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: testjob alloc|count|fail|sleep ...")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "alloc":
		alloc(atoi(arg(2)), optional(3))
	case "alloc-params":
		var p struct{ MiB int }
		data, err := os.ReadFile(os.Getenv("JOBFLEET_PARAMS_FILE"))
		if err == nil {
			err = json.Unmarshal(data, &p)
		}
		if err != nil {
			fail(err)
		}
		alloc(p.MiB, optional(2))
	case "write":
		file := write(arg(2), atoi(arg(3)))
		alloc(atoi(arg(4)), optional(5))
		_ = os.Remove(file)
	case "count":
		count(atoi(arg(2)), time.Duration(atoi(arg(3)))*time.Millisecond, arg(4))
	case "fail":
		fmt.Fprintln(os.Stderr, "failing on purpose")
		os.Exit(atoi(arg(2)))
	case "sleep":
		time.Sleep(time.Duration(atoi(arg(2))) * time.Millisecond)
	case "wait":
		for {
			if _, err := os.Stat(arg(2)); err == nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	default:
		fmt.Fprintf(os.Stderr, "unknown mode %q\n", os.Args[1])
		os.Exit(2)
	}
}

// alloc allocates and touches mib MiB, and holds them for hold ms.
func alloc(mib int, hold string) {
	buf := make([]byte, mib<<20)
	for i := 0; i < len(buf); i += 4096 {
		buf[i] = 1
	}
	if hold != "" {
		time.Sleep(time.Duration(atoi(hold)) * time.Millisecond)
	}
	fmt.Printf("allocated %d MiB, checksum %d\n", mib, buf[len(buf)-4096])
}

// write writes a file of mib MiB in dir, flushed to disk every 64 MiB
// so its page cache is clean and the kernel may reclaim it, and returns
// its name.
func write(dir string, mib int) string {
	f, err := os.CreateTemp(dir, "testjob-write-")
	if err != nil {
		fail(err)
	}
	chunk := make([]byte, 1<<20)
	for i := range mib {
		chunk[0] = byte(i)
		if _, err := f.Write(chunk); err != nil {
			fail(err)
		}
		if (i+1)%64 == 0 {
			if err := f.Sync(); err != nil {
				fail(err)
			}
		}
	}
	if err := f.Close(); err != nil {
		fail(err)
	}
	return f.Name()
}

// count advances a counter kept in the checkpoint directory, so that a rerun
// resumes where the last checkpoint left it. It appends one line per start
// and per finish to the log file: "start <progress> <resumed> <attempt>",
// "stop <progress>", "done <progress>".
func count(target int, step time.Duration, logFile string) {
	if info, err := os.Stat(logFile); err == nil && info.IsDir() {
		logFile = filepath.Join(logFile, os.Getenv("JOBFLEET_JOB_ID")+".log")
	}
	dir := os.Getenv("JOBFLEET_CHECKPOINT_DIR")
	progressFile := filepath.Join(dir, "progress")
	progress := 0
	if data, err := os.ReadFile(progressFile); err == nil {
		progress = atoi(string(data))
	}
	// Listen for SIGTERM before announcing the start, so that whoever waits
	// for the start line may stop the job at once.
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	appendLine(logFile, fmt.Sprintf("start %d %s %s", progress, os.Getenv("JOBFLEET_RESUMED"), os.Getenv("JOBFLEET_ATTEMPT")))
	tick := time.NewTicker(step)
	defer tick.Stop()
	for progress < target {
		select {
		case <-term:
			save(progressFile, progress)
			appendLine(logFile, fmt.Sprintf("stop %d", progress))
			os.Exit(143)
		case <-tick.C:
			progress++
			save(progressFile, progress)
		}
	}
	appendLine(logFile, fmt.Sprintf("done %d", progress))
	// Its key/value output, when the worker asks for outputs.
	if out := os.Getenv("JOBFLEET_OUTPUTS_FILE"); out != "" {
		if err := os.WriteFile(out, []byte(fmt.Sprintf(`{"count": %d}`, progress)), 0o644); err != nil {
			fail(err)
		}
	}
}

// save writes the progress atomically, as checkpoint files should be.
func save(file string, progress int) {
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(progress)), 0o644); err != nil {
		fail(err)
	}
	if err := os.Rename(tmp, file); err != nil {
		fail(err)
	}
}

func appendLine(file, line string) {
	f, err := os.OpenFile(file, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		fail(err)
	}
	defer f.Close()
	if _, err := fmt.Fprintln(f, line); err != nil {
		fail(err)
	}
}

func arg(i int) string {
	if len(os.Args) <= i {
		fail(fmt.Errorf("missing argument %d", i))
	}
	return os.Args[i]
}

// optional is argument i, or "" when it was not given.
func optional(i int) string {
	if len(os.Args) <= i {
		return ""
	}
	return os.Args[i]
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		fail(err)
	}
	return n
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "testjob:", err)
	os.Exit(2)
}
