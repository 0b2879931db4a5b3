// {{name}}: a Sluice transform plugin in Go. It keeps the records whose value contains the
// configured `needle` and drops the others; a value that is not UTF-8 is dead-lettered.
// abi.go connects these two functions to the host: leave it as it is.
package main

import (
	"bytes"
	"fmt"
	"unicode/utf8"
)

var needle []byte

// Called once per instance with the `config` table of pipeline.toml; an error rejects it.
func initTransform(config [][2]string) error {
	found := false
	for _, kv := range config {
		if kv[0] != "needle" {
			return fmt.Errorf("unknown config key `%s` (known keys: needle)", kv[0])
		}
		needle, found = []byte(kv[1]), true
	}
	if !found {
		return fmt.Errorf("config key `needle` is required")
	}
	logInfo(fmt.Sprintf("keeping records that contain %q", needle))
	return nil
}

// Called for each record of a batch: caseKeep, caseDrop, caseSetValue with the new value, or
// caseFail with the reason the host dead-letters the record with.
func apply(value []byte) (byte, []byte) {
	if !utf8.Valid(value) {
		return caseFail, []byte("not valid UTF-8")
	}
	if bytes.Contains(value, needle) {
		return caseKeep, nil
	}
	return caseDrop, nil
}
