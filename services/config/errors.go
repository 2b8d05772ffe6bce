package config

import (
	"fmt"
	"strings"
)

// Error is a configuration file that cannot be used, with every problem
// found in it. Messages never contain secret values.
type Error struct {
	File   string
	Fields []FieldError
}

// FieldError is one problem, located by its JSON path (e.g. wan.static.address).
type FieldError struct {
	Field    string // JSON path; empty for the whole document
	Problem  string // what is wrong and what was expected
	Line     int    // 1-based line for syntax errors, else 0
	Column   int
	isSyntax bool
}

func (e *Error) Error() string {
	lines := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		lines[i] = e.File + ": " + f.String()
	}
	return strings.Join(lines, "\n")
}

func (f FieldError) String() string {
	switch {
	case f.isSyntax:
		return fmt.Sprintf("line %d column %d: %s", f.Line, f.Column, f.Problem)
	case f.Field == "":
		return f.Problem
	default:
		return f.Field + ": " + f.Problem
	}
}

// problems collects field errors during validation.
type problems []FieldError

func (p *problems) add(field, format string, a ...any) {
	*p = append(*p, FieldError{Field: field, Problem: fmt.Sprintf(format, a...)})
}
