#!/usr/bin/env python3
"""A real browser through the forgot-password flow: headless Chromium (Debian's chromium and
chromium-driver) driven by Selenium (python3-selenium). Opens the sign-on page, clicks "Forgot
password?", submits the address, opens the link from the mail that arrived in the maildir, sets a
new password and signs in. Saves a screenshot of each step into SHOTS. Exits 0 when every step
showed what it should.

    browser_flow.py BASE_URL MAILDIR SHOTS EMAIL NEW_PASSWORD
"""

import glob
import os
import re
import sys
import time
from email import policy
from email.parser import BytesParser

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

base, maildir, shots, email, password = sys.argv[1:6]
os.makedirs(shots, exist_ok=True)

options = webdriver.ChromeOptions()
options.binary_location = "/usr/bin/chromium"
for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=900,800"):
    options.add_argument(argument)
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
driver.set_page_load_timeout(20)


def shot(name):
    driver.save_screenshot(os.path.join(shots, name + ".png"))


def expect(condition, what):
    """Checks `condition` (a function), waiting up to 10 s: a click starts a navigation without
    waiting for the next page."""
    deadline = time.time() + 10
    while not condition() and time.time() < deadline:
        time.sleep(0.05)
    if not condition():
        shot("failed")
        print("FAILED: " + what + "\n--- page ---\n" + driver.page_source[:2000])
        driver.quit()
        sys.exit(1)


try:
    driver.get(base + "/")
    shot("1-sign-on")
    driver.find_element(By.LINK_TEXT, "Forgot password?").click()
    expect(lambda: "/password/forgot" in driver.current_url, "the Forgot password link leads to the form")
    driver.find_element(By.NAME, "email").send_keys(email)
    shot("2-forgot-form")
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    expect(lambda: "If an account exists for that address" in driver.page_source, "the forgot-password answer")
    shot("3-check-your-email")

    link = None
    deadline = time.time() + 15
    while link is None and time.time() < deadline:
        for path in sorted(glob.glob(os.path.join(maildir, "new", "*"))):
            with open(path, "rb") as handle:
                message = BytesParser(policy=policy.default).parse(handle)
            text = message.get_body(preferencelist=("plain",)).get_content()
            match = re.search(r"(https?://\S+/password/reset\?token=[A-Za-z0-9_-]+)", text)
            if match:
                link = match.group(1)
        time.sleep(0.1)
    expect(lambda: link is not None, "the reset mail arrived with its link")

    driver.get(link)
    expect(lambda: driver.find_elements(By.NAME, "password"), "the link opens the new-password form")
    shot("4-new-password-form")
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.NAME, "confirm").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    expect(lambda: "Your password was changed" in driver.page_source, "the sign-on page says the password was changed")
    shot("5-password-changed")

    driver.find_element(By.NAME, "email").send_keys(email)
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    expect(lambda: "You are signed in as" in driver.page_source, "signing in with the new password works")
    shot("6-signed-in")
finally:
    driver.quit()
print("ok")
