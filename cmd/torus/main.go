// Command torus trains and fine-tunes decoder language models on long sequences.
// See README.md; the command tree lives in internal/cli.
package main

import (
	"os"

	"github.com/torusml/torus/internal/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr)) }
