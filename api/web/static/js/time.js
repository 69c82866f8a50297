// <time datetime="…"> elements shown in the person's locale and time zone.
const lang = document.documentElement.lang || "fr";

export function localiseTimes(root) {
  for (const el of root.querySelectorAll("time[datetime]")) {
    const value = el.getAttribute("datetime");
    if (!value) continue;
    const dateOnly = /^\d{4}-\d{2}-\d{2}$/.test(value);
    const when = new Date(dateOnly ? `${value}T12:00:00` : value);
    if (Number.isNaN(when.getTime())) continue;
    const options = dateOnly
      ? { dateStyle: "medium" }
      : { dateStyle: "medium", timeStyle: "short" };
    el.textContent = new Intl.DateTimeFormat(lang, options).format(when);
  }
}
