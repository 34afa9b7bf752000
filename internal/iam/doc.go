// Package iam evaluates AWS IAM policies for tests. It answers one question:
// do these policies allow this request? A test can then check that a
// CloudFormation template's roles and resource policies grant the calls the
// code makes, and nothing else.
//
// It implements the parts of AWS's evaluation logic that jobfleet's
// policies use:
//
//   - An explicit Deny in any statement wins. Otherwise an Allow whose
//     Action, Resource, Principal and every Condition match allows the
//     request. Otherwise the request is implicitly denied.
//   - Action and NotAction match case-insensitively, with the wildcards *
//     and ?. Resource and NotResource match case-sensitively, with the same
//     wildcards, across the whole ARN. A statement without Resource or
//     NotResource, as in a trust policy, matches every resource.
//   - Principal and NotPrincipal match the request's Caller. "*" (or
//     {"AWS": "*"}) matches every caller, and an account ID (or its :root
//     ARN) matches every ARN in that account. A statement without either
//     matches every caller, as an identity-based policy does.
//   - The condition operators String(Not)Equals, String(Not)EqualsIgnoreCase,
//     String(Not)Like, Arn(Not)Equals, Arn(Not)Like, Numeric(Not)Equals,
//     NumericLessThan(Equals), NumericGreaterThan(Equals), Bool and Null.
//     Each of them except Null also has an ...IfExists variant and the
//     ForAnyValue: and ForAllValues: set qualifiers. Blocks, keys and
//     operators are ANDed. The values of one key are ORed. Condition key
//     names are case-insensitive.
//
// Evaluate never fails open. A statement it cannot evaluate (an unknown
// operator such as DateGreaterThan, an Effect other than Allow or Deny, a
// number that does not parse) makes the whole evaluation Invalid, never
// Allowed. Policy.Validate lists every such problem at once.
//
// This is not AWS's evaluator. It ignores policy variables (${aws:username}
// is matched literally), permissions boundaries, session policies, SCPs and
// the cross-account rule that both sides must allow. It evaluates all the
// policies it is given as one set, as AWS does for the identity-based and
// resource-based policies of one account.
package iam
