package cli

import (
	"bytes"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/torusml/torus/runlog"
)

func newPlotCmd() *cobra.Command {
	var (
		out           string
		width, height int
	)
	cmd := &cobra.Command{
		Use:   "plot RUN [RUN...]",
		Short: "Draw runs' loss, eval loss, learning rate and tokens/s against step as one PNG",
		Long: `Draw runs' loss, eval loss, learning rate and tokens/s against step as one PNG:
a grid of four panels, each run a line of its own color, named in the legend.
RUN is a run directory (or its metrics.jsonl); a run still training is drawn
as far as it has gone.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var runs []runlog.Run
			steps := 0
			for _, a := range args {
				r, err := runlog.ReadRun(a)
				if err != nil {
					return fmt.Errorf("plot: %w", err)
				}
				runs = append(runs, r)
				steps += r.Lines
			}
			var buf bytes.Buffer
			if err := runlog.Plot(&buf, runs, width, height); err != nil {
				return err
			}
			if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
				return fmt.Errorf("plot: %w", err)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "torus: plot: %s (%d run(s), %d metrics lines)\n", out, len(runs), steps)
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "plot.png", "the PNG file to write")
	cmd.Flags().IntVar(&width, "width", 1400, "image width, pixels")
	cmd.Flags().IntVar(&height, "height", 900, "image height, pixels")
	return cmd
}
