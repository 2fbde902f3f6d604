//! What a valid spec probably does not mean: warnings, not errors, because each reading is
//! legal (k6 reads `p(95)<200` as milliseconds too). `herd validate`, `herd run` and the API's
//! `/validate` show them.

use super::model::Spec;
use crate::threshold::Op;

/// Every warning for `spec`, in the order of its thresholds.
pub fn warnings(spec: &Spec) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(r) = &spec.runner {
        out.extend(r.notes.iter().cloned());
        if r.thresholds_from_script {
            // Translated from k6's own syntax, whose units are fixed: nothing to guess.
            return out;
        }
    }
    for (i, t) in spec.thresholds.iter().enumerate() {
        if t.baseline.is_some() {
            continue;
        }
        let rhs = t
            .expr
            .rsplit(['<', '>', '='])
            .next()
            .unwrap_or_default()
            .trim();
        let bare = rhs.parse::<f64>().is_ok();
        if t.metric.is_latency() && bare {
            out.push(format!(
                "thresholds[{i}]: `{}` has no unit: read as {rhs} ms (write {rhs}ms, or e.g. 2s)",
                t.expr
            ));
        }
        if t.metric.is_rate() && bare && t.value >= 1.0 {
            let holds = match t.op {
                Op::Lt | Op::Le => "holds even when every request fails",
                Op::Gt | Op::Ge | Op::Eq => "asks for more than all of them",
            };
            out.push(format!(
                "thresholds[{i}]: `{}` {holds}: a rate is a fraction (1% is 0.01; write `1%`)",
                t.expr
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::warnings;

    fn spec(thresholds: &str) -> crate::spec::Spec {
        crate::spec::parse_spec(&format!(
            "name: t\ntarget: http://x\nscenario: [{{request: GET /}}]\nload: {{executor: constant-vus, vus: 1, duration: 1s}}\nthresholds: {thresholds}\n"
        ))
        .expect("a valid spec")
    }

    #[test]
    fn a_limit_without_its_unit_or_a_rate_of_one_is_pointed_out() {
        let w = warnings(&spec(
            "['p95 < 200', 'error_rate < 1', 'p99 < 2s', 'error_rate < 1%', 'error_rate < 0.05']",
        ));
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].starts_with("thresholds[0]: `p95 < 200` has no unit: read as 200 ms"),
            "{w:?}"
        );
        assert!(
            w[1].contains("`error_rate < 1` holds even when every request fails"),
            "{w:?}"
        );
        assert!(warnings(&spec("['p95 < baseline.p95 * 1.1']")).is_empty());
    }
}
