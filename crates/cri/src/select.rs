//! Choosing the sandbox kubelet would use, and finding near matches for a wrong name.
//! Pure functions over what either API returned, so they are unit-tested without a runtime.

use crate::{Error, PodRef};

/// One sandbox as either API describes it.
#[derive(Debug, Clone)]
pub(crate) struct Sandbox {
    pub(crate) id: String,
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) ready: bool,
    /// Creation time, nanoseconds since the epoch.
    pub(crate) created_at: i64,
    pub(crate) state: String,
}

/// Picks the ready, newest sandbox of `pod`; explains the choice when there were several.
pub(crate) fn pick<'a>(
    sandboxes: &'a [Sandbox],
    pod: &PodRef,
    endpoint: &str,
) -> Result<(&'a Sandbox, Vec<String>), Error> {
    let mut same: Vec<&Sandbox> = sandboxes
        .iter()
        .filter(|s| s.namespace == pod.namespace && s.name == pod.name)
        .collect();
    if same.is_empty() {
        return Err(Error::PodNotFound {
            pod: pod.to_string(),
            endpoint: endpoint.to_string(),
            near: near_matches(sandboxes, pod),
        });
    }
    same.sort_by_key(|s| std::cmp::Reverse(s.created_at));
    let count = same.len();
    let Some(chosen) = same.iter().find(|s| s.ready).copied() else {
        return Err(Error::PodNotReady {
            pod: pod.to_string(),
            count,
            newest_state: same.first().map(|s| s.state.clone()).unwrap_or_default(),
        });
    };
    let mut notes = Vec::new();
    if count > 1 {
        let ready = same.iter().filter(|s| s.ready).count();
        notes.push(format!(
            "{count} sandboxes share this name ({ready} ready); picked the ready, newest one ({}), as kubelet does",
            short(&chosen.id)
        ));
    }
    Ok((chosen, notes))
}

/// The same name in other namespaces, then names within a small edit distance.
pub(crate) fn near_matches(sandboxes: &[Sandbox], pod: &PodRef) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |s: String| {
        if !out.contains(&s) {
            out.push(s);
        }
    };
    for s in sandboxes.iter().filter(|s| s.name == pod.name) {
        push(format!("{}/{}", s.namespace, s.name));
    }
    let limit = (pod.name.len() / 4).max(2);
    let mut scored: Vec<(usize, String)> = sandboxes
        .iter()
        .filter(|s| s.name != pod.name)
        .filter_map(|s| {
            let d = edit_distance(&s.name, &pod.name);
            let prefix = s.name.starts_with(&pod.name) || pod.name.starts_with(&s.name);
            (d <= limit || prefix).then(|| (d, format!("{}/{}", s.namespace, s.name)))
        })
        .collect();
    scored.sort();
    for (_, s) in scored.into_iter().take(5) {
        push(s);
    }
    out
}

/// Levenshtein distance over chars.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The first 13 characters of an ID, as crictl prints them.
pub(crate) fn short(id: &str) -> &str {
    id.get(..13).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sb(id: &str, ns: &str, name: &str, ready: bool, t: i64) -> Sandbox {
        Sandbox {
            id: id.into(),
            namespace: ns.into(),
            name: name.into(),
            ready,
            created_at: t,
            state: if ready {
                "SANDBOX_READY"
            } else {
                "SANDBOX_NOTREADY"
            }
            .into(),
        }
    }

    fn pod(ns: &str, name: &str) -> PodRef {
        PodRef {
            namespace: ns.into(),
            name: name.into(),
            container: None,
        }
    }

    #[test]
    fn picks_ready_newest_and_says_so() {
        let all = [
            sb("old-notready", "default", "web-0", false, 1),
            sb("ready-older", "default", "web-0", true, 2),
            sb("ready-newest", "default", "web-0", true, 3),
            sb("newest-notready", "default", "web-0", false, 4),
            sb("other-ns", "prod", "web-0", true, 5),
        ];
        let (s, notes) = pick(&all, &pod("default", "web-0"), "e").unwrap();
        assert_eq!(s.id, "ready-newest");
        assert_eq!(notes.len(), 1);
        assert!(
            notes[0].contains("4 sandboxes share this name (2 ready)"),
            "{notes:?}"
        );
    }

    #[test]
    fn single_sandbox_has_no_note() {
        let all = [sb("a", "default", "web-0", true, 1)];
        let (s, notes) = pick(&all, &pod("default", "web-0"), "e").unwrap();
        assert_eq!(s.id, "a");
        assert!(notes.is_empty());
    }

    #[test]
    fn none_ready_is_not_ready_error() {
        let all = [
            sb("a", "default", "web-0", false, 1),
            sb("b", "default", "web-0", false, 2),
        ];
        let e = pick(&all, &pod("default", "web-0"), "e").unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, Error::PodNotReady { count: 2, .. }), "{msg}");
        assert!(msg.contains("none is ready"), "{msg}");
    }

    #[test]
    fn not_found_lists_other_namespaces_and_similar_names() {
        let all = [
            sb("a", "prod", "web-0", true, 1),
            sb("b", "default", "web-1", true, 1),
            sb("c", "default", "database", true, 1),
        ];
        let e = pick(&all, &pod("default", "web-0"), "unix:///x").unwrap_err();
        let Error::PodNotFound { near, .. } = &e else {
            panic!("{e}")
        };
        assert_eq!(
            near,
            &["prod/web-0".to_string(), "default/web-1".to_string()]
        );
        assert!(
            e.to_string()
                .contains("did you mean: prod/web-0, default/web-1?"),
            "{e}"
        );
    }

    #[test]
    fn edit_distance_basics() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("web-0", "web-0"), 0);
    }
}
