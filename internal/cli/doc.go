// Package cli owns torus's command tree (cobra): it is the only code that reads
// flags and the environment, turns them and the recipe into typed values, and
// hands those to launch, trainer, eval, checkpoint, plan and device. A command's
// RunE parses and calls; the work lives in those packages.
package cli
