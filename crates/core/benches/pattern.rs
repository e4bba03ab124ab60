//! Matching one native S3 record against 1, 10 and 100 source patterns, as the sources feature
//! will do for every record it receives. Run with `cargo bench -p gateway-core --bench pattern`.
//!
//! The record is AWS's sample S3 notification record. The patterns are what sources would hold:
//! a bucket plus key prefixes or suffixes, with numeric, wildcard, anything-but, equals-ignore-case,
//! cidr and `$or` conditions mixed in. A quarter of them watch the record's bucket and are
//! evaluated past the bucket name; the first one matches.
//!
//! What is measured, per iteration:
//! - `match/patterns/N`: `EventPattern::matches` of the parsed record against each of N compiled
//!   patterns, counting the matches.
//! - `baseline/parse_record`: `serde_json::from_slice::<Value>` of the same record, which any
//!   source has to do first, for scale.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use serde_json::{json, Value};

use gateway_core::pattern::EventPattern;

const PATTERN_COUNTS: [usize; 3] = [1, 10, 100];

fn s3_record() -> Value {
    json!({
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-west-2",
        "eventTime": "1970-01-01T00:00:00.000Z",
        "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": "AIDAJDPLRKLG7UEXAMPLE"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {
            "x-amz-request-id": "C3D13FE58DE4C810",
            "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD"
        },
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "testConfigRule",
            "bucket": {
                "name": "tenant-0-uploads",
                "ownerIdentity": {"principalId": "A3NL1KOZZKExample"},
                "arn": "arn:aws:s3:::tenant-0-uploads"
            },
            "object": {
                "key": "incoming/2024/06/HappyFace.jpg",
                "size": 1024,
                "eTag": "d41d8cd98f00b204e9800998ecf8427e",
                "versionId": "096fKKXTRTtl3on89fVO.nfljtsv6qko",
                "sequencer": "0055AED6DCD90281E5"
            }
        }
    })
}

/// Source `i`'s pattern; sources 0, 4, 8, ... watch the record's bucket, and of those only source 0
/// takes its key prefix.
fn source_pattern(i: usize) -> Value {
    let bucket = format!("tenant-{}-uploads", i % 4);
    let prefix = if i == 0 { "incoming/".to_owned() } else { format!("incoming/{i}/") };
    match i % 5 {
        0 => json!({
            "eventSource": ["aws:s3"],
            "eventName": [{"prefix": "ObjectCreated:"}],
            "s3": {"bucket": {"name": [bucket]}, "object": {"key": [{"prefix": prefix}]}}
        }),
        1 => json!({
            "s3": {
                "bucket": {"name": [bucket]},
                "object": {
                    "key": [{"suffix": ".png"}, {"suffix": ".gif"}],
                    "size": [{"numeric": [">", 0, "<=", 10_485_760]}]
                }
            }
        }),
        2 => json!({
            "awsRegion": [{"anything-but": ["us-gov-west-1", "cn-north-1"]}],
            "s3": {
                "bucket": {"arn": [format!("arn:aws:s3:::{bucket}")]},
                "object": {"key": [{"wildcard": "invoices/*/*.pdf"}]}
            }
        }),
        3 => json!({
            "eventSource": ["aws:s3"],
            "s3": {"bucket": {"name": [bucket]}},
            "$or": [
                {"eventName": ["ObjectRemoved:Delete"]},
                {"userIdentity": {"principalId": [{"prefix": "AWS:AROA"}]}}
            ]
        }),
        _ => json!({
            "s3": {
                "bucket": {"name": [{"equals-ignore-case": bucket}]},
                "object": {"key": [{"prefix": {"equals-ignore-case": "Reports/"}}]}
            },
            "requestParameters": {"sourceIPAddress": [{"cidr": "10.0.0.0/8"}]}
        }),
    }
}

fn benches(c: &mut Criterion) {
    let record = s3_record();
    let bytes = serde_json::to_vec(&record).expect("record serializes");

    let mut baseline = c.benchmark_group("baseline");
    baseline.bench_function("parse_record", |b| {
        b.iter(|| serde_json::from_slice::<Value>(black_box(&bytes)).expect("record parses"))
    });
    baseline.finish();

    let mut group = c.benchmark_group("match");
    for n in PATTERN_COUNTS {
        let patterns: Vec<EventPattern> =
            (0..n).map(|i| EventPattern::parse(&source_pattern(i)).expect("source pattern is valid")).collect();
        let matching = patterns.iter().filter(|p| p.matches(&record)).count();
        assert_eq!(matching, 1, "exactly source 0 matches the record");
        group.bench_with_input(BenchmarkId::new("patterns", n), &patterns, |b, patterns| {
            b.iter(|| patterns.iter().filter(|p| p.matches(black_box(&record))).count())
        });
    }
    group.finish();
}

criterion_group!(pattern_benches, benches);
criterion_main!(pattern_benches);
