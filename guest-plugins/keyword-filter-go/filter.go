// keyword-filter in Go: keeps the tweets that mention a keyword (see ../keyword-filter). A
// port of the Rust library in guest-plugins/transforms, held to the same test vectors
// (guest-plugins/vectors): same config keys, same matching rules, same outcomes. The shared
// code (ABI, JSON, config, paths, matcher) is in ../transforms-go.
package main

import (
	"errors"
	"fmt"
)

type filter struct {
	search *search
	invert bool
}

var current *filter

func initTransform(pairs [][2]string) error {
	f, err := newFilter(pairs)
	if err != nil {
		return err
	}
	logInfo(f.summary())
	current = f
	return nil
}

const notInitialised = "not initialised: process was called before a successful init"

func apply(value []byte) (byte, []byte) {
	if current == nil {
		return caseFail, []byte(notInitialised)
	}
	keep, err := current.apply(value)
	switch {
	case err != nil:
		return caseFail, []byte(err.Error())
	case keep:
		return caseKeep, nil
	default:
		return caseDrop, nil
	}
}

var knownKeys = []string{"keywords", "fields", "case_sensitive", "whole_word", "invert"}

func newFilter(pairs [][2]string) (*filter, error) {
	c, err := newConfig(pairs, knownKeys)
	if err != nil {
		return nil, err
	}
	s, err := newSearch(c)
	if err != nil {
		return nil, err
	}
	if s.matcher == nil {
		return nil, errors.New("config key `keywords` is required: comma-separated keywords, e.g. \"bts,방탄소년단\"")
	}
	f := &filter{search: s}
	if f.invert, err = c.boolean("invert", false); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *filter) summary() string {
	verb := "keeps only"
	if f.invert {
		verb = "drops"
	}
	return fmt.Sprintf("%s tweets matching %s", verb, f.search.describe())
}

func (f *filter) apply(value []byte) (bool, error) {
	doc, err := objectDoc(value)
	if err != nil {
		return false, err
	}
	m, p := f.search.matcher, f.search.paths
	found := false
	err = walk(doc, p, p.start(), func(s string) {
		if !found {
			found = m.matchesAny(s)
		}
	}, 0)
	if err != nil {
		return false, err
	}
	return found != f.invert, nil
}
