"""Write engine/data/common_passwords.txt: passwords people pick first.

The list is generated, not downloaded: the well-known top picks of the public
breach-derived lists (written out below from those published rankings,
including the ones popular in China such as ``5201314`` and ``woaini1314``),
then the patterns those lists are made of — a common word or name with a
year or a digit run, keyboard walks, repeated and sequential digits, dates.
Only entries of 6 or more characters are kept (shorter ones fail the length
rule anyway). Run from the checkout: ``python scripts/make_common_passwords.py``.
"""

from __future__ import annotations

from pathlib import Path

TOP = """
123456 password 123456789 12345678 12345 qwerty 1234567 111111 1234567890 123123 abc123 1234 password1
iloveyou 1q2w3e4r 000000 qwerty123 zaq12wsx dragon sunshine princess letmein 654321 monkey 27653 1qaz2wsx
123321 qwertyuiop superman asdfghjkl trustno1 football baseball welcome shadow master michael jennifer
hunter2 hunter ranger buster soccer harley batman andrew tigger charlie robert thomas hockey killer george
sexy jordan pepper daniel access 666666 joshua maggie starwars silver william dallas yankees 123qwe
computer michelle jessica pussy freedom whatever 696969 mustang 121212 cheese 112233 amanda summer love
ashley nicole chelsea biteme matthew flower passw0rd p@ssw0rd p@ssword pa55word passwort motdepasse
contrasena senha parola wachtwoord admin admin123 administrator root toor guest changeme default
secret secret123 qazwsx qwe123 asd123 zxc123 zxcvbn zxcvbnm asdfgh asdfghjk qwertyu 1qazxsw2 q1w2e3r4
q1w2e3r4t5 1q2w3e 1q2w3e4r5t 1q2w3e4r5t6y a1b2c3 a1b2c3d4 abcd1234 abcdef abcdefg abcdefgh aaaaaa
woaini woaini1314 wo1314 5201314 520520 1314520 woaiwojia iloveyou1 aini1314 a123456 a12345678 aa123456
aa12345678 qq123456 qq111111 123456a 123456aa 123456abc abc123456 asd123456 zxc123456 qwe123456
88888888 8888888 888888 66666666 6666666 11111111 00000000 99999999 168168 518518 147258369 147258
159357 159753 741852963 987654321 9876543210 0123456789 123654 123654789 1234qwer qwer1234 123abc
password123 password12 password! password1! welcome1 welcome123 letmein1 iloveyou2 sunshine1 monkey1
football1 baseball1 dragon1 master1 shadow1 michael1 superman1 princess1 charlie1 jordan23 lakers kobe24
liverpool arsenal chelsea1 barcelona realmadrid manchester juventus pokemon naruto minecraft fortnite
google facebook twitter linkedin youtube tencent alibaba taobao baidu weixin wechat huawei xiaomi apple
samsung iphone android windows microsoft linux ubuntu oracle mysql postgres database server internet
promoflow promotion marketing coupon customer welcome@123 admin@123 root@123 test123 test1234 testtest
testing tester demo demo123 user user123 login login123 pass pass123 pass1234 passpass mypassword
mypass letmein123 trustme hello hello123 helloworld hellokitty loveyou lovely loveme love123 iloveu
angel angel1 baby babygirl babyboy sweety sweetheart honey cookie cookies chocolate banana orange
apple123 cherry lemon peanut butter pumpkin tiger lion eagle falcon wolf bear panda dolphin fish
""".split()

WORDS = """
password passw0rd admin welcome qwerty letmein monkey dragon master shadow sunshine princess football
baseball superman batman iloveyou love hello test user login china beijing shanghai shenzhen guangzhou
woaini zhang wang li liu chen yang huang zhao wu zhou xu sun ma zhu hu guo he lin luo gao
michael jennifer jessica ashley amanda daniel david james john robert thomas charlie george andrew
summer winter spring autumn flower money secret freedom whatever computer internet company office
manager market sales store staff finance boss company123 changeme default access
""".split()

SUFFIXES = ["", "1", "12", "123", "1234", "12345", "123456", "!", "@", "#", "1!", "123!", "@123",
            "#123", "888", "666", "520", "1314", "007", "2008", "2010", "2012", "2015", "2018",
            "2019", "2020", "2021", "2022", "2023", "2024", "2025", "2026"]

WALKS = ["qwertyui", "qwertyuiop", "asdfghjkl", "zxcvbnm", "1qaz2wsx3edc", "qazwsxedc", "qweasdzxc",
         "1q2w3e4r5t", "zaq1xsw2", "!qaz2wsx", "!qaz@wsx", "1qaz@wsx", "qwer1234", "asdf1234", "zxcv1234",
         "qwertyuiop123", "poiuytrewq", "mnbvcxz", "0987654321", "1029384756"]


def generate() -> list[str]:
    """The list, most typical first, without duplicates."""
    seen: dict[str, None] = {}
    for word in TOP + WALKS:
        seen.setdefault(word.lower(), None)
    for word in WORDS:
        for suffix in SUFFIXES:
            for variant in (word, word.capitalize()):
                seen.setdefault((variant + suffix).lower(), None)
    for digit in "0123456789":
        for length in range(6, 13):
            seen.setdefault(digit * length, None)
    for start in range(10):
        for length in range(6, 11):
            run = "".join(str((start + i) % 10) for i in range(length))
            seen.setdefault(run, None)
            seen.setdefault(run[::-1], None)
    for year in range(1960, 2027):  # birthdays written as yyyymmdd for the first of each month
        for month in range(1, 13):
            seen.setdefault(f"{year}{month:02d}01", None)
    return [p for p in seen if len(p) >= 6]


def main() -> None:
    target = Path(__file__).resolve().parent.parent / "engine" / "data" / "common_passwords.txt"
    words = generate()
    target.write_text("# generated by scripts/make_common_passwords.py; one lower-case password a line\n"
                      + "\n".join(words) + "\n", encoding="utf-8")
    print(f"{len(words)} passwords → {target}")


if __name__ == "__main__":
    main()
