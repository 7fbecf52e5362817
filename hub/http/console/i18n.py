"""The console's words in English and Chinese. The language comes from the `lang` cookie (the switch in the
header sets it), else from the browser's Accept-Language; English when neither says Chinese."""

from __future__ import annotations

from typing import Any

LANGUAGES = ("en", "zh")

MESSAGES: dict[str, dict[str, str]] = {
    "en": {
        "app": "tickethub console", "runs": "Runs", "tickets": "Tickets", "dead": "Dead letters",
        "ownership": "Ownership", "health": "Health", "logout": "Log out", "login": "Log in",
        "name": "Name", "secret": "Password or token", "login_failed": "Wrong name, password or token.",
        "login_intro": "Operators and viewers of this hub log in with their account (or the API token and a name).",
        "signed_in_as": "Signed in as {name} ({role})", "viewer": "viewer", "operator": "operator",
        "run": "Run", "state": "State", "mode": "Mode", "dry_run": "Dry run", "started": "Started",
        "finished": "Finished", "tickets_n": "Tickets", "copies": "Copies compared", "discrepancies": "Discrepancies",
        "awaiting_review": "Awaiting review", "not_checked": "Not checked", "trend": "Trend", "no_runs": "No run yet.",
        "filters": "Filters", "system": "System", "field": "Field", "rule": "Rule", "action": "Action",
        "kind": "Kind", "author": "Responsible author", "by": "Author", "any": "(any)", "apply_filters": "Filter",
        "clear": "Clear", "ticket": "Ticket", "values": "Candidate values", "winner": "Winner", "reason": "Reason",
        "decision": "Decision", "accept": "Accept the proposal", "override": "Override with",
        "decide_selected": "Review the selected decisions", "select": "Select", "select_all": "Select all",
        "page": "Page {page} of {pages} ({total} items)", "previous": "Previous", "next": "Next",
        "summary": "Summary", "by_system": "By system", "by_field": "By field", "by_rule": "By rule",
        "by_action": "By action", "by_kind": "By kind", "reports": "Reports",
        "confirm_title": "Confirm the decisions", "confirm_intro": "These writes will be made:",
        "confirm": "Confirm and write", "cancel": "Cancel", "golden": "the hub's record",
        "will_write": "{field} = {value} → {targets}", "nothing_selected": "Select at least one item.",
        "decided": "{count} decision(s) recorded; {deliveries} write(s) queued.",
        "decided_by": "decided by {operator}: {decision}", "refused": "Refused: {reason}",
        "search": "Find a ticket", "search_hint": "ticket ID (20260213-SVC-00892) or a system's record ID",
        "not_found": "No ticket matches “{q}”.", "golden_record": "Golden record", "value": "Value",
        "source": "Source", "modified_at": "Modified at", "received_at": "Received at", "xrefs": "Cross-references",
        "timeline": "Timeline", "outcome": "Outcome", "deliveries": "Deliveries", "attempts": "Attempts",
        "when": "When", "what": "What", "delivery": "Delivery", "status_code": "HTTP status", "error": "Error",
        "replay": "Replay", "replay_selected": "Replay the selected", "replayed": "{count} dead letter(s) replayed.",
        "no_dead": "No dead letter.", "fields": "Fields sent", "last_error": "Last error", "since": "Since",
        "matrix": "Fields × systems", "problems": "Problems in the mappings", "no_problems": "No problem found.",
        "owner": "owner", "queues": "Deliveries by state", "rates": "First-attempt delivery success",
        "dwell": "Dwell breaches", "ready": "Database and broker", "ok": "ok", "failing": "failing",
        "forbidden": "Only operators may do this.", "csrf": "The form expired; reload the page and try again.",
        "language": "中文", "created": "Created", "none": "none", "refusals": "Refused writes and transitions",
    },
    "zh": {
        "app": "tickethub 控制台", "runs": "对账批次", "tickets": "工单", "dead": "死信",
        "ownership": "字段归属", "health": "运行状况", "logout": "退出", "login": "登录",
        "name": "用户名", "secret": "密码或令牌", "login_failed": "用户名、密码或令牌不正确。",
        "login_intro": "本系统的操作员和查看者使用自己的账号登录（或使用 API 令牌并填写姓名）。",
        "signed_in_as": "当前用户：{name}（{role}）", "viewer": "查看者", "operator": "操作员",
        "run": "批次", "state": "状态", "mode": "方式", "dry_run": "演练", "started": "开始",
        "finished": "结束", "tickets_n": "工单数", "copies": "已比对副本", "discrepancies": "差异",
        "awaiting_review": "待复核", "not_checked": "未检查", "trend": "趋势", "no_runs": "还没有对账批次。",
        "filters": "筛选", "system": "系统", "field": "字段", "rule": "规则", "action": "处理",
        "kind": "类型", "author": "责任人", "by": "作者", "any": "（全部）", "apply_filters": "筛选",
        "clear": "清除", "ticket": "工单", "values": "候选值", "winner": "胜出值", "reason": "原因",
        "decision": "决定", "accept": "接受建议", "override": "改为",
        "decide_selected": "复核所选的决定", "select": "选择", "select_all": "全选",
        "page": "第 {page} / {pages} 页（共 {total} 条）", "previous": "上一页", "next": "下一页",
        "summary": "汇总", "by_system": "按系统", "by_field": "按字段", "by_rule": "按规则",
        "by_action": "按处理", "by_kind": "按类型", "reports": "报告",
        "confirm_title": "确认决定", "confirm_intro": "将写入以下内容：",
        "confirm": "确认并写入", "cancel": "取消", "golden": "中枢记录",
        "will_write": "{field} = {value} → {targets}", "nothing_selected": "请至少选择一项。",
        "decided": "已记录 {count} 个决定；已排队 {deliveries} 次写入。",
        "decided_by": "{operator} 已决定：{decision}", "refused": "被拒绝：{reason}",
        "search": "查找工单", "search_hint": "工单号（20260213-SVC-00892）或某系统的记录号",
        "not_found": "没有与“{q}”匹配的工单。", "golden_record": "主记录", "value": "值",
        "source": "来源", "modified_at": "修改时间", "received_at": "接收时间", "xrefs": "交叉引用",
        "timeline": "时间线", "outcome": "结果", "deliveries": "下发", "attempts": "尝试",
        "when": "时间", "what": "内容", "delivery": "下发", "status_code": "HTTP 状态", "error": "错误",
        "replay": "重放", "replay_selected": "重放所选", "replayed": "已重放 {count} 条死信。",
        "no_dead": "没有死信。", "fields": "发送的字段", "last_error": "最后错误", "since": "起始时间",
        "matrix": "字段 × 系统", "problems": "映射中的问题", "no_problems": "未发现问题。",
        "owner": "归属", "queues": "各状态的下发", "rates": "首次下发成功率",
        "dwell": "滞留超时", "ready": "数据库与消息队列", "ok": "正常", "failing": "故障",
        "forbidden": "只有操作员可以执行此操作。", "csrf": "表单已过期，请刷新页面后重试。",
        "language": "English", "created": "创建", "none": "无", "refusals": "被拒绝的写入和状态变更",
    },
}


# the values the pages show (run states, kinds, rules, actions, decisions), in Chinese; English shows them as
# they are stored (they are also what the JSON report and the API say)
VALUES_ZH = {
    "done": "完成", "running": "进行中", "failed": "失败", "full": "全量", "incremental": "增量",
    "conflict": "冲突", "missed_change": "漏收变更", "drift": "偏离", "orphan": "孤立记录", "dangling": "悬空引用",
    "missing": "缺失", "repaired": "已修复", "would_repair": "将修复（演练）", "reported": "仅报告",
    "awaiting_review": "待复核", "accepted": "已接受", "overridden": "已改写", "accept": "接受", "override": "改写",
    "agree": "一致", "newest": "最新修改", "author_rank": "作者级别", "system_rank": "系统级别",
    "flagged": "需人工判断",
    "ownership": "字段归属", "none": "无", "pending": "待发送", "in_flight": "发送中", "retry_wait": "等待重试",
    "delivered": "已送达", "dead": "死信", "replayed": "已重放", "superseded": "已被取代",
    "applied": "已应用", "echo": "回声", "duplicate": "重复", "stale": "过时", "not_owner": "非归属系统",
    "invalid_value": "无效值", "not_allowed": "不允许的状态变更", "no_evidence": "缺少证据",
}


def pick_language(cookie: str | None, accept_language: str | None) -> str:
    if cookie in LANGUAGES:
        return str(cookie)
    best, best_q = "en", -1.0
    for part in (accept_language or "").split(","):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        lang = tag.strip().lower().split("-")[0]
        if lang in LANGUAGES and q > 0 and q > best_q:
            best, best_q = lang, q
    return best


def translator(lang: str) -> Any:
    table = MESSAGES.get(lang, MESSAGES["en"])

    def t(key: str, **values: Any) -> str:
        text = table.get(key) or MESSAGES["en"].get(key) or key
        return text.format(**values) if values else text

    return t


def value_namer(lang: str) -> Any:
    """A stored code (`missed_change`, `repaired`, ...) as the page says it: in Chinese with the code beside."""
    def v(code: Any) -> str:
        text = str(code)
        return f"{VALUES_ZH[text]} ({text})" if lang == "zh" and text in VALUES_ZH else text

    return v
