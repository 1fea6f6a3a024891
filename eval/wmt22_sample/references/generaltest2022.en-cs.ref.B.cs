Pokud vás nenajdou, určitě zavolají.
Je však lepší, když jsou v blízkosti vaší doručovací adresy, můžete je namísto toho kontaktovat.
Vakuová hadice Samco Sport je čistě silikonová gumová hadice, která je k dispozici ve vnitřních průměrech (I.D) od 3 do 9 mm.
Je speciálně navržena pro všechna podtlaková vedení motoru, odvzdušňovací hadice karburátoru, odvzdušňovací hadice palivové nádrže, přepad chladicí kapaliny a kontrolu emisí a lze ji použít pro hadičky ostřikovačů a izolaci vodičů.
Vhodné pouze pro nízkotlaká zařízení.
Vakuová hadice Samco není určena k rozvodům oleje, paliva nebo k nepřetržitému přenosu horké vody pod tlakem.
Vyznačuje se neuvěřitelnou roztažitelností v průměru, která umožňuje hadici natáhnout na přípojku pro dokonalé utěsnění (tj. hadici o vnitřním průměru 3 mm můžete natáhnout na přípojku o vnějším průměru 5 mm).
Přidejte k objednávce 5 dvojitých drátěných svorek za pouhých 99 pencí, jsou ideální pro zajištění vakuové hadice na místě!
S více než 12letými zkušenostmi se silikonovými hadicemi Samco Sport na trhu s náhradními díly jsme hrdí na to, že jsme předním světovým distributorem silikonových hadic pro motocykly.
Díky rozsáhlým zásobám univerzálních závodních dílů se snažíme o 100% servis.
Vakuová hadice Samco Sport celou řadu použití: kontrola emisí, přepad chladiče, ostřikovače a je ideální pro výměnu odvzdušňovací hadice karburátoru u motokrosových a silničních motocyklů.
Jedná se o skvělý výrobek vhodný pro všechny motocykly, automobily a komerční využití.
Přidejte k objednávce 5 dvojitých drátěných svorek za pouhých 99 pencí, jsou ideální pro zajištění vakuové hadice na místě!
Není vhodná pro vysokotlaké rozvody vody nebo systémy ohřevu vody.
Tato hadice není vhodná pro rozvody oleje.
Proč zvolit silikonové hadice Samco Sport?
Limitovaná doživotní záruka, 2 roky při použití na palivo.
Stačí se přihlásit ke svému účtu a počkat na dokončení synchronizace, knihy se načtou na #PRS_ORG# automaticky.
To je vše.
Je prosím ještě něco, s čím mohu pomoci?
Jste tam?
Je mi líto, z důvodu kvality budu muset tento chat zavřít, pokud neobdržím odpověď do 2 minut.
Tento chat nyní ukončím, protože jsem neobdržel žádnou odpověď.
Rád vám budu nadále pomáhat prostřednictvím e-mailu, nebo nás můžete znovu kontaktovat v čase, který vám bude vyhovovat.
> Odpojení je bude potřebovat, abyste se ujistili, že jejich aplikace fungují ve všech různých verzích iOS.
Nemusí to být nezbytně pravda.
Jen položte uzávěr na verze iOS, které podporuje, a pouze vytlačte aktualizace u nejnovějších kompatibilních verzí iOS.
Tak dnes funguje většina aplikací.
> Také vzhledem k tomu, že Apple může často uvolnit nové verze iOS a macOS.
Není problém, že to stále není dost často?
