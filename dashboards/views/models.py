"""Models: registry versions with metrics and confusion matrices, gate decisions, retraining
runs; promote / roll back (admin only, confirmed in a second step)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboards import actions
from dashboards.access import PermissionDenied
from dashboards.actions import ActionFailed
from dashboards.context import cached_query, invalidate
from dashboards.data import models
from dashboards.ui import page_context, utcnow

ctx = page_context()
settings, user = ctx.settings, ctx.user

st.title("Models")
flash = st.session_state.pop("mv_flash", None)
if flash:
    st.success(flash)

versions = cached_query(settings, models.list_versions)
if not versions:
    st.info("The registry is empty: no model has been registered yet.")
else:
    champion = next((v for v in versions if v.status == "champion"), None)
    st.text(f"serving: {champion.version if champion else 'no champion in the registry'}")
    st.dataframe(pd.DataFrame([models.summary_row(v) for v in versions]), hide_index=True, key="mv_versions")

    by_version = {v.version: v for v in versions}
    chosen = st.selectbox("Version", list(by_version), key="mv_pick")
    version = by_version[chosen]
    st.code(
        f"status   {version.status}\nparent   {version.parent or '-'}\npath     {version.path}\n"
        f"sha256   {version.sha256}\ndata     {version.data_hash}",
        language=None,
    )
    if version.note:
        st.text(version.note)
    reports = list(models.find_reports(version.metrics))
    if not reports:
        st.caption("No classification reports in this version's metrics.")
    for path, report in reports:
        with st.expander(
            f"{path}: accuracy {report.get('accuracy', 0):.4f}, macro-F1 {report.get('macro_f1', 0):.4f}"
        ):
            st.dataframe(models.per_class_table(report), hide_index=True, key=f"mv_pc_{path}")
            matrix = models.confusion_frame(report)
            if matrix is not None:
                st.caption("confusion matrix (rows: true class, columns: predicted)")
                st.dataframe(matrix, key=f"mv_cm_{path}")

    st.subheader("Promote or roll back")
    if not user.can("model.promote"):
        st.caption("Promotion and rollback are for administrators.")
    else:
        pending = st.session_state.get("mv_pending")
        if pending is None:
            reason = st.text_input("Reason (recorded with the promotion)", key="mv_reason")
            cols = st.columns(2)
            if cols[0].button(
                f"Promote {version.version}…", key="mv_promote", disabled=version.status == "champion"
            ):
                st.session_state["mv_pending"] = ("promote", version.version, reason)
                st.rerun()
            if cols[1].button("Roll back the champion…", key="mv_rollback", disabled=champion is None):
                st.session_state["mv_pending"] = ("rollback", champion.version if champion else "", "")
                st.rerun()
        else:
            kind, target, reason = pending
            what = f"promote {target} to champion" if kind == "promote" else f"roll back {target}"
            st.warning(f"Confirm: {what}. The workers switch models at once.")
            cols = st.columns(2)
            if cols[0].button("Confirm", key="mv_confirm", type="primary"):
                del st.session_state["mv_pending"]
                try:
                    if kind == "promote":
                        actions.promote_version(
                            ctx.sessions,
                            user,
                            version=target,
                            reason=reason or "dashboard",
                            settings=settings,
                            now=utcnow(),
                        )
                    else:
                        actions.rollback_champion(
                            ctx.sessions,
                            user,
                            settings=settings,
                            now=utcnow(),
                            expected_champion=target or None,  # the champion the warning named
                        )
                except (PermissionDenied, ActionFailed, ValueError, LookupError) as exc:
                    st.error(str(exc))
                else:
                    invalidate()
                    st.session_state["mv_flash"] = f"done: {what}"
                    st.rerun()
            if cols[1].button("Cancel", key="mv_cancel"):
                del st.session_state["mv_pending"]
                st.rerun()

st.subheader("Gate decisions")
decisions = cached_query(settings, models.gate_decisions)
if not decisions:
    st.caption("No gate decisions yet.")
else:
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "decided (UTC)": d.decided_at,
                    "challenger": d.challenger_version,
                    "champion": d.champion_version,
                    "accepted": d.accepted,
                    "reasons": "; ".join(d.reasons),
                }
                for d in decisions
            ]
        ),
        hide_index=True,
        key="mv_gates",
    )
    for d in decisions[:10]:
        with st.expander(f"gate #{d.id}: {'accepted' if d.accepted else 'rejected'} {d.challenger_version}"):
            for reason in d.reasons:
                st.text(reason)
            st.json(d.comparison, expanded=False)

st.subheader("Retraining runs")
runs = cached_query(settings, models.retrain_runs)
if runs.empty:
    st.caption("No retraining runs yet.")
else:
    st.dataframe(runs, hide_index=True, key="mv_runs")
