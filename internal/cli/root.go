package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// Main runs the command line and returns the process exit status: 0, 1 on an
// error, 128+N after a graceful stop on signal N (130 for SIGINT, 143 for
// SIGTERM).
func Main(args []string, stdout, stderr io.Writer) int {
	ctx, signals := withSignals(context.Background(), stderr)
	defer signals.close()
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	// A recipe's warnings go to this stderr; a worker's parent (torus train,
	// torus launch) has already shown them, so a worker keeps quiet.
	defer func(w io.Writer) { recipeWarnings = w }(recipeWarnings)
	recipeWarnings = stderr
	if c, _, err := root.Find(args); err == nil && c.Name() == "worker" {
		recipeWarnings = io.Discard
	}
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(stderr, "torus: %v\n", err)
		var stop *signalStop
		if errors.As(err, &stop) {
			return 128 + int(stop.sig)
		}
		return 1
	}
	return 0
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "torus",
		Short:         "Train and fine-tune decoder language models on sequences longer than one device holds",
		Version:       versionString(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newTrainCmd(), newRecipeCmd(), newCkptCmd(), newExportCmd(), newWorkerCmd(), newPlanCmd(),
		newEvalCmd(), newGenerateCmd())
	root.AddCommand(newLaunchCmd())
	root.AddCommand(newGPUsCmd())
	root.AddCommand(newTokenizeCmd())
	root.AddCommand(newPlotCmd())
	root.AddCommand(newVersionCmd())
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error { return usageError(cmd, err.Error()) })
	for _, c := range root.Commands() {
		withUsage(c)
	}
	return root
}

// version is this build's version: the Makefile sets it with
// -ldflags "-X github.com/torusml/torus/internal/cli.version=$(git describe --always --dirty)".
// Empty, versionString falls back on the build information.
var version string

// versionString is what torus --version and torus version print: the
// version, then the Go toolchain, platform and GOEXPERIMENT it was built with.
func versionString() string {
	v := version
	settings := map[string]string{}
	bi, ok := debug.ReadBuildInfo()
	if ok {
		for _, s := range bi.Settings {
			settings[s.Key] = s.Value
		}
	}
	if v == "" {
		switch rev := settings["vcs.revision"]; {
		case rev != "": // a build with VCS stamping (builds here use -buildvcs=false)
			v = rev[:min(len(rev), 12)]
			if settings["vcs.modified"] == "true" {
				v += "-dirty"
			}
		case ok && bi.Main.Version != "" && bi.Main.Version != "(devel)": // go install ...@vX.Y.Z
			v = bi.Main.Version
		default:
			v = "dev"
		}
	}
	goVersion, exp := runtime.Version(), "none"
	for _, sep := range []string{"-X:", " X:"} { // "go1.27.3-X:simd" names the experiments too
		if v, x, ok := strings.Cut(goVersion, sep); ok {
			goVersion, exp = v, x
			break
		}
	}
	if e := settings["GOEXPERIMENT"]; e != "" {
		exp = e
	}
	return fmt.Sprintf("torus %s\n%s %s/%s GOEXPERIMENT=%s", v, goVersion, runtime.GOOS, runtime.GOARCH, exp)
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, and the Go toolchain and GOEXPERIMENT it was built with (also torus --version)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), versionString())
			return err
		},
	}
}

// withUsage makes c and every command below it answer a wrong number of
// arguments with what was expected and got, and the command's usage. A
// group of commands (torus ckpt) answers an argument that names none of
// them the same way, and no argument with its help, as before.
func withUsage(c *cobra.Command) {
	switch check := c.Args; {
	case check != nil:
		c.Args = func(cmd *cobra.Command, args []string) error {
			if err := check(cmd, args); err != nil {
				return usageError(cmd, argCountMsg(cmd, check, args))
			}
			return nil
		}
	case c.HasSubCommands() && !c.Runnable():
		c.Args = cobra.ArbitraryArgs
		c.RunE = func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return cmd.Help()
			}
			names := make([]string, 0, len(cmd.Commands()))
			for _, sub := range cmd.Commands() {
				if sub.IsAvailableCommand() {
					names = append(names, sub.Name())
				}
			}
			return usageError(cmd, fmt.Sprintf("unknown command %q: one of %s", args[0], strings.Join(names, ", ")))
		}
	}
	for _, sub := range c.Commands() {
		withUsage(sub)
	}
}

// usageError is msg about cmd, with its usage line and where to read more.
func usageError(cmd *cobra.Command, msg string) error {
	path := cmd.CommandPath()
	if cmd.HasParent() { // Main puts "torus: " before it
		msg = strings.TrimPrefix(path, cmd.Root().Name()+" ") + ": " + msg
	}
	return fmt.Errorf("%s\nUsage: %s\nRun '%s --help' for the flags", msg, cmd.UseLine(), path)
}

// argCountMsg says how many arguments cmd takes (found by asking its
// validator about 0 to 4 of them), which, and what it got: "accepts 1
// argument (RECIPE.yaml), got 0", "requires at least 1 argument (RUN
// [RUN...]), got 0" (the words of cobra's own messages, which tests match).
func argCountMsg(cmd *cobra.Command, check cobra.PositionalArgs, args []string) string {
	const probe = 4
	var ok []int
	for n := 0; n <= probe; n++ {
		if check(cmd, make([]string, n)) == nil {
			ok = append(ok, n)
		}
	}
	verb, want := "accepts ", ""
	switch {
	case len(ok) == 0:
		return fmt.Sprintf("bad arguments %q", args)
	case len(ok) == 1 && ok[0] == 0:
		want = "no arguments"
	case len(ok) == 1:
		want = plural(ok[0], "argument")
	case ok[len(ok)-1] == probe && ok[len(ok)-1]-ok[0] == len(ok)-1:
		verb, want = "requires ", "at least "+plural(ok[0], "argument")
	default:
		s := make([]string, len(ok))
		for i, n := range ok {
			s[i] = fmt.Sprint(n)
		}
		want = strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1] + " arguments"
	}
	if names := argNames(cmd); names != "" && ok[len(ok)-1] > 0 {
		want += " (" + names + ")"
	}
	got := fmt.Sprint(len(args))
	if len(args) > 0 {
		got += ": " + strings.Join(args, " ")
	}
	return verb + want + ", got " + got
}

// argNames is the positional part of cmd's Use: "RECIPE.yaml" of
// "train RECIPE.yaml", "RUN [RUN...]" of "plot RUN [RUN...]".
func argNames(cmd *cobra.Command) string {
	var names []string
	for _, f := range strings.Fields(cmd.Use)[1:] {
		if strings.HasPrefix(f, "-") {
			break
		}
		names = append(names, f)
	}
	return strings.Join(names, " ")
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
