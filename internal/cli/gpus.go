package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/torusml/torus/device"
)

func newGPUsCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "gpus",
		Short: "The GPUs of this machine (NVML): memory, load, driver and CUDA version",
		Long: `Lists every GPU NVML sees (CUDA_VISIBLE_DEVICES does not apply): its index,
name, memory used and total, and how busy it has been over the last second.
On a machine without the NVIDIA driver it says so and exits 0.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runGPUs(cmd.OutOrStdout(), cmd.ErrOrStderr(), asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the list as JSON")
	return cmd
}

func runGPUs(stdout, stderr io.Writer, asJSON bool) error {
	gpus, err := device.GPUs()
	if errors.Is(err, device.ErrNoDriver) {
		// No driver is an answer, not a failure: this machine has no GPU to use.
		if asJSON {
			fmt.Fprintf(stderr, "torus gpus: %v\n", err)
			fmt.Fprintln(stdout, "[]")
			return nil
		}
		fmt.Fprintf(stdout, "torus gpus: %v\n", err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("gpus: %w", err)
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(gpus)
	}
	if len(gpus) == 0 {
		fmt.Fprintln(stdout, "torus gpus: the NVIDIA driver is here but sees no GPU")
		return nil
	}
	g0 := gpus[0]
	fmt.Fprintf(stdout, "%d GPUs, NVIDIA driver %s, CUDA %s\n", len(gpus), g0.Driver, g0.CUDA)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "index\tname\tmemory used\ttotal\tutilization\t")
	for _, g := range gpus {
		util := "n/a"
		if g.UtilizationGPU >= 0 {
			util = fmt.Sprintf("%d%%", g.UtilizationGPU)
		}
		fmt.Fprintf(tw, "%d\t%s\t%.1f GiB\t%.1f GiB\t%s\t\n", g.Index, g.Name, gibs(g.MemoryUsed), gibs(g.MemoryTotal), util)
	}
	return tw.Flush()
}

func gibs(n uint64) float64 { return float64(n) / (1 << 30) }
