// A courtesy only: the server already makes a double submit create one order.
document.addEventListener("submit", function (event) {
  var button = event.target.querySelector("button[type=submit]");
  if (button) {
    setTimeout(function () { button.disabled = true; button.textContent = "Redeeming…"; }, 0);
  }
});
