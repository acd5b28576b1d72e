"""The site's generated pages: Markdown (and the charts they show) from the state.

One module per page and one for what they share. Each ``*_page`` function is a pure
function of :class:`SiteData` that returns the Markdown of one page; the charts are
drawn by :func:`draw_charts`. Nothing here reads the state or the clock:
:mod:`engine.report.site` loads the data and runs the build. The home page renders a
list of :class:`~engine.report.pages.arms.Arm`; :func:`~engine.report.pages.arms.arms_of`
is the one place that says which arms a state holds.
"""

from engine.report.pages.arms import Arm, arms_of
from engine.report.pages.backtests import backtests_page
from engine.report.pages.charts import draw_charts, week_charts
from engine.report.pages.common import Backtest, Links, SiteData, md_table, month_page
from engine.report.pages.data import data_page, write_downloads
from engine.report.pages.decisions import decisions_index, decisions_month
from engine.report.pages.home import home_page
from engine.report.pages.notes import alerts_page, report_page, reports_index
from engine.report.pages.portfolio import portfolio_page
from engine.report.pages.risk import risk_page

__all__ = ["Arm", "Backtest", "Links", "SiteData", "alerts_page", "arms_of", "backtests_page", "data_page",
           "decisions_index", "decisions_month", "draw_charts", "home_page", "md_table", "month_page",
           "portfolio_page", "reports_index", "report_page", "risk_page", "week_charts", "write_downloads"]
