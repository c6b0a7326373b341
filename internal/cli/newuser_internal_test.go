package cli

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/torusml/torus/trainer"
)

func runMain(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = Main(args, &out, &errb)
	return code, out.String(), errb.String()
}

// TestWrongArgCount: every command, given a number of arguments it does not
// take, exits 1 with what it takes and got, its usage line, and where the
// flags are described; a group (torus ckpt) does so for an argument that
// names none of its commands.
func TestWrongArgCount(t *testing.T) {
	root := newRoot(io.Discard, io.Discard)
	var cmds []*cobra.Command
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			if sub.Name() == "help" || sub.Name() == "completion" {
				continue
			}
			cmds = append(cmds, sub)
			walk(sub)
		}
	}
	walk(root)
	if len(cmds) < 15 {
		t.Fatalf("found %d commands under torus, want every one (>= 15)", len(cmds))
	}
	for _, c := range cmds {
		name := strings.TrimPrefix(c.CommandPath(), "torus ")
		t.Run(name, func(t *testing.T) {
			args := strings.Fields(name)
			if c.HasSubCommands() { // a group: an argument that names none of its commands
				args = append(args, "bogus")
			} else {
				// The fewest arguments it refuses: none for most, 2 for torus train.
				wrong := -1
				for n := 0; n <= 5 && wrong < 0; n++ {
					if c.Args(c, make([]string, n)) != nil {
						wrong = n
					}
				}
				if wrong < 0 {
					t.Fatalf("%s takes any number of arguments: nothing to check", name)
				}
				for i := range wrong {
					args = append(args, "arg"+string(rune('a'+i)))
				}
			}
			code, stdout, stderr := runMain(args...)
			if code != 1 {
				t.Fatalf("torus %s: exit %d, want 1; stderr:\n%s", strings.Join(args, " "), code, stderr)
			}
			for _, want := range []string{
				"torus: " + name + ": ",
				"\nUsage: " + c.UseLine(), // [flags] follows once cobra adds --help
				"\nRun 'torus " + name + " --help' for the flags\n",
			} {
				if !strings.Contains(stderr, want) {
					t.Errorf("torus %s: stderr lacks %q:\n%s", strings.Join(args, " "), want, stderr)
				}
			}
			if stdout != "" {
				t.Errorf("torus %s: stdout %q, want nothing", strings.Join(args, " "), stdout)
			}
		})
	}
}

// TestWrongArgCountMessages: the exact messages, one per kind of validator.
func TestWrongArgCountMessages(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"train"}, "torus: train: accepts 1 argument (RECIPE.yaml), got 0\n" +
			"Usage: torus train RECIPE.yaml [flags]\nRun 'torus train --help' for the flags\n"},
		{[]string{"recipe", "check", "a.yaml", "b.yaml"}, "torus: recipe check: accepts 1 argument (RECIPE.yaml), got 2: a.yaml b.yaml\n" +
			"Usage: torus recipe check RECIPE.yaml [flags]\nRun 'torus recipe check --help' for the flags\n"},
		{[]string{"plot"}, "torus: plot: requires at least 1 argument (RUN [RUN...]), got 0\n" +
			"Usage: torus plot RUN [RUN...] [flags]\nRun 'torus plot --help' for the flags\n"},
		{[]string{"gpus", "0"}, "torus: gpus: accepts no arguments, got 1: 0\n" +
			"Usage: torus gpus [flags]\nRun 'torus gpus --help' for the flags\n"},
		{[]string{"ckpt", "lss", "runs/a"}, "torus: ckpt: unknown command \"lss\": one of inspect, ls, verify\n" +
			"Usage: torus ckpt [flags]\nRun 'torus ckpt --help' for the flags\n"},
		{[]string{"train", "r.yaml", "--otu", "x"}, "torus: train: unknown flag: --otu\n" +
			"Usage: torus train RECIPE.yaml [flags]\nRun 'torus train --help' for the flags\n"},
	} {
		code, _, stderr := runMain(tc.args...)
		if code != 1 || stderr != tc.want {
			t.Errorf("torus %s: exit %d, stderr\n%s\nwant exit 1, stderr\n%s", strings.Join(tc.args, " "), code, stderr, tc.want)
		}
	}
	// A group without arguments still prints its help.
	if code, stdout, stderr := runMain("ckpt"); code != 0 || !strings.Contains(stdout, "Available Commands") {
		t.Errorf("torus ckpt: exit %d, stdout %q, stderr %q; want its help", code, stdout, stderr)
	}
}

// TestVersion: torus --version and torus version print the version the
// Makefile sets (-X ...internal/cli.version), the Go version and GOEXPERIMENT.
func TestVersion(t *testing.T) {
	defer func(v string) { version = v }(version)
	goVersion := strings.FieldsFunc(runtime.Version(), func(r rune) bool { return r == ' ' || r == '-' })[0] // go1.27.3-X:simd
	for _, tc := range []struct{ set, want string }{
		{"v1.2.3-4-gabcdef0-dirty", "torus v1.2.3-4-gabcdef0-dirty\n"},
		{"", "torus "}, // the build information's, else dev
	} {
		version = tc.set
		for _, args := range [][]string{{"--version"}, {"version"}} {
			code, stdout, stderr := runMain(args...)
			if code != 0 {
				t.Fatalf("torus %s: exit %d: %s", args[0], code, stderr)
			}
			for _, want := range []string{tc.want, goVersion + " " + runtime.GOOS + "/" + runtime.GOARCH, "GOEXPERIMENT="} {
				if !strings.HasPrefix(stdout, "torus ") || !strings.Contains(stdout, want) {
					t.Errorf("torus %s (version %q): %q lacks %q", args[0], tc.set, stdout, want)
				}
			}
			if exp := os.Getenv("GOEXPERIMENT"); exp != "" && !strings.Contains(stdout, "GOEXPERIMENT="+exp) {
				t.Errorf("torus %s: %q does not name GOEXPERIMENT %s, which built it", args[0], stdout, exp)
			}
			if strings.Count(stdout, "\n") != 2 {
				t.Errorf("torus %s: %q, want two lines", args[0], stdout)
			}
		}
	}
}

// TestWarmupCappedWarns: warmup_steps past steps is capped, with a warning on
// stderr, by loadRecipe (train, plan, launch) and by torus recipe check.
func TestWarmupCappedWarns(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "text.txt")
	if err := os.WriteFile(data, []byte("some text"), 0o644); err != nil {
		t.Fatal(err)
	}
	rec := filepath.Join(dir, "r.yaml")
	src := "name: w\ndata:\n  sources: [{type: text_file, path: " + data + "}]\nschedule:\n  steps: 10\n  warmup_steps: 50\n"
	if err := os.WriteFile(rec, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	const warning = "torus: warning: " + "%s:6: schedule.warmup_steps: 50 is past schedule.steps (10): capped to 10, so the learning rate warms up over the whole run\n"
	want := strings.Replace(warning, "%s", rec, 1)

	code, stdout, stderr := runMain("recipe", "check", rec)
	if code != 0 || stderr != want || !strings.Contains(stdout, "warmup_steps: 10") {
		t.Errorf("torus recipe check: exit %d, stderr %q, want %q; stdout:\n%s", code, stderr, want, stdout)
	}

	defer func(w io.Writer) { recipeWarnings = w }(recipeWarnings)
	var warns bytes.Buffer
	recipeWarnings = &warns
	r, err := loadRecipe(rec, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if r.Schedule.WarmupSteps != 10 || warns.String() != want {
		t.Errorf("loadRecipe: warmup_steps %d, warnings %q; want 10, %q", r.Schedule.WarmupSteps, warns.String(), want)
	}
	if _, err := trainerConfig(r); err != nil {
		t.Errorf("trainerConfig of the capped recipe: %v", err)
	}
	warns.Reset()
	if _, err := loadRecipe(rec, []string{"schedule.warmup_steps=10"}, ""); err != nil || warns.Len() != 0 {
		t.Errorf("warmup_steps = steps: err %v, warnings %q; want none", err, warns.String())
	}
}

// TestEvalOutCheckedFirst: an --out torus eval cannot write into fails before
// the model loads (the model folder here would not load at all).
func TestEvalOutCheckedFirst(t *testing.T) {
	dir := t.TempDir()
	hf := filepath.Join(dir, "hf")
	if err := os.MkdirAll(hf, 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "file")
	for _, p := range []string{filepath.Join(hf, "config.json"), file} {
		if err := os.WriteFile(p, []byte("{}"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	readOnly := filepath.Join(dir, "ro")
	if err := os.Mkdir(readOnly, 0o555); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		args     []string
		want     string
		skipRoot bool // root writes past permission bits
	}{
		{"out is a file", []string{"--out", file}, "eval: --out " + file + ": exists and is not a folder", false},
		{"out below a file", []string{"--out", filepath.Join(file, "sub", "dir")}, "eval: --out " + filepath.Join(file, "sub", "dir") + ": " + file + " is not a folder", false},
		{"out read-only", []string{"--out", readOnly}, "eval: --out " + readOnly + ": cannot write in " + readOnly + ": permission denied", true},
		{"below read-only", []string{"--out", filepath.Join(readOnly, "new")}, "cannot write in " + readOnly, true},
		{"no out outside a run", nil, "eval: no --out: " + hf + " is not in a run directory", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.skipRoot && os.Geteuid() == 0 {
				t.Skip("root writes in a read-only folder")
			}
			for _, task := range []string{"passkey", "ppl"} {
				args := append([]string{"eval", hf, "--task", task, "--recipe", filepath.Join(dir, "absent.yaml")}, tc.args...)
				if task == "passkey" {
					args = append([]string{"eval", hf, "--task", task}, tc.args...)
				}
				code, _, stderr := runMain(args...)
				if code != 1 || !strings.Contains(stderr, tc.want) {
					t.Errorf("torus %s: exit %d, stderr %q; want 1, %q", strings.Join(args, " "), code, stderr, tc.want)
				}
				if strings.Contains(stderr, "loaded") || strings.Contains(stderr, "absent.yaml") {
					t.Errorf("torus %s went on past the --out check: %s", strings.Join(args, " "), stderr)
				}
			}
		})
	}
	// A folder that does not exist yet passes, and the check leaves nothing behind.
	out := filepath.Join(dir, "new", "eval")
	if got, err := reportDir(modelTarget{dir: hf}, out); err != nil || got != out {
		t.Errorf("reportDir(%s) = %q, %v", out, got, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 3 { // hf, file, ro
		t.Errorf("the check left files behind in %s: %v", dir, entries)
	}
	if got, err := reportDir(modelTarget{dir: hf, run: dir}, ""); err != nil || got != filepath.Join(dir, "eval") {
		t.Errorf("reportDir of a run without --out = %q, %v; want RUN/eval", got, err)
	}
}

// TestProgressTokensSmoothed: the line's tokens/s is the last 20 steps'
// tokens over their time, the first (compiling) step left out once there is
// another.
func TestProgressTokensSmoothed(t *testing.T) {
	type st struct{ tps, secs float64 }
	repeat := func(n int, s st) []st {
		out := make([]st, n)
		for i := range out {
			out[i] = s
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		steps []st
		want  string // in the last line
	}{
		{"first step alone", []st{{10, 100}}, "    10 tok/s"},
		{"first step left out", []st{{10, 100}, {1000, 1}}, "  1000 tok/s"},
		{"weighted by time", []st{{10, 100}, {1000, 1}, {3000, 3}}, "  2500 tok/s"},
		{"alternating", append([]st{{10, 100}}, append(repeat(10, st{1000, 1}), repeat(10, st{3000, 1})...)...), "  2000 tok/s"},
		{"last 20 only", append(append([]st{{10, 100}}, repeat(30, st{1000, 1})...), repeat(20, st{4000, 0.25})...), "  4000 tok/s"},
		{"no timings", []st{{10, 0}, {1000, 0}, {2000, 0}}, "  1500 tok/s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			p := newProgress(&buf, "plain", 1, len(tc.steps))
			for i, s := range tc.steps {
				p.step(trainer.StepStats{Step: i + 1, Loss: 2, TokensPerS: s.tps, StepSeconds: s.secs})
			}
			lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
			if last := lines[len(lines)-1]; !strings.Contains(last, tc.want) {
				t.Errorf("last line %q lacks %q", last, tc.want)
			}
		})
	}
}

// TestProgressEvalLoss: a step with an eval loss shows "eval X" after its loss,
// and is kept on screen (plain: printed although off the log.every beat; bar:
// ended with a newline).
func TestProgressEvalLoss(t *testing.T) {
	ev := 3.12341
	for _, tc := range []struct {
		mode     string
		every    int
		want     []string // the output's lines (bar: each the redraws up to a newline), in part
		evalLine int
	}{
		{"plain", 10, []string{"step  1/20  loss 2.0000  lr", "step  5/20  loss 2.0000  eval 3.1234  lr", "step 10/20  loss 2.0000  lr"}, 1},
		{"bar", 10, []string{"step  5/20  loss 2.0000  eval 3.1234  lr", "step 10/20  loss 2.0000  lr"}, 0},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			var buf bytes.Buffer
			p := newProgress(&buf, tc.mode, tc.every, 20)
			for step := 1; step <= 10; step++ {
				s := trainer.StepStats{Step: step, Loss: 2, TokensPerS: 100, StepSeconds: 1}
				if step == 5 {
					s.EvalLoss = &ev
				}
				p.step(s)
			}
			lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
			if len(lines) != len(tc.want) {
				t.Fatalf("%d lines, want %d:\n%s", len(lines), len(tc.want), buf.String())
			}
			for i, w := range tc.want {
				if !strings.Contains(lines[i], w) {
					t.Errorf("line %d %q lacks %q", i, lines[i], w)
				}
				if strings.Contains(lines[i], "eval") != (i == tc.evalLine) {
					t.Errorf("line %d %q: eval shown on the wrong step", i, lines[i])
				}
			}
		})
	}
}
