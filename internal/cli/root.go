package cli

import (
	"context"
	"errors"
	"fmt"
	"io"

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
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newTrainCmd(), newRecipeCmd(), newCkptCmd(), newExportCmd(), newWorkerCmd(), newPlanCmd(),
		newEvalCmd(), newGenerateCmd())
	root.AddCommand(newLaunchCmd())
	root.AddCommand(newGPUsCmd())
	root.AddCommand(newTokenizeCmd())
	root.AddCommand(newPlotCmd())
	return root
}
