package iam

import "strings"

// Match reports whether s matches pattern, case-sensitively, where * in
// the pattern matches any run of characters (none included) and ? any one
// character, as in IAM's StringLike and Resource.
func Match(pattern, s string) bool {
	// Iterative matching with one backtrack point: the last *.
	p, i := 0, 0
	star, mark := -1, 0
	for i < len(s) {
		switch {
		// A * in the pattern is always a wildcard, even where s has a *
		// too, so it is tried before a literal match.
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == s[i]):
			p++
			i++
		case star >= 0:
			p = star + 1
			mark++
			i = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// MatchFold is Match ignoring case, as IAM matches actions.
func MatchFold(pattern, s string) bool {
	return Match(strings.ToLower(pattern), strings.ToLower(s))
}

// MatchARN reports whether arn matches pattern as IAM's ArnLike and
// ArnEquals do: each of the six colon-separated parts (arn, partition,
// service, region, account, resource) is matched on its own, with
// wildcards, case-sensitively. A pattern of just * matches every ARN.
func MatchARN(pattern, arn string) bool {
	if pattern == "*" {
		return true
	}
	pp := strings.SplitN(pattern, ":", 6)
	ap := strings.SplitN(arn, ":", 6)
	if len(pp) != 6 || len(ap) != 6 {
		return false
	}
	for i := range pp {
		if !Match(pp[i], ap[i]) {
			return false
		}
	}
	return true
}
