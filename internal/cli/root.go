package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// Main runs the command line and returns the process exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(stderr, "torus: %v\n", err)
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
	return root
}
