// Command bench is userrouter's load-test tool.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "bench: not built yet")
	os.Exit(2)
}
